"""Converters from published checkpoint formats to maskgen modules: one module per format,
each a key map plus the configuration its shapes imply, nothing else.

A converter reads the original ``torch.save`` file with ``weights_only=True`` (never
unpickling code), maps every key onto a maskgen module or names it in a one-line
``MaskgenError``, and returns the module in eval mode; saving it is maskgen's ordinary
checkpoint path (safetensors plus JSON). The published layouts are configurations of
maskgen's own classes, not copies of them.

- ``valeoai_v1``: the MaskGIT transformer of Besnier & Chen 2023, "A Pytorch Reproduction
  of Masked Generative Image Transformer" (valeoai/Maskgit-pytorch v1).
- ``taming_vqgan``: its tokenizer, the VQGAN f16-1024 of Esser et al. 2021 (taming-transformers).
- ``mar``: the MAE generator and diffusion head of MAR (Li et al. 2024) and eMIGM
  (You et al. 2025).
- ``mar_vae``: their KL-16 VAE (LDM's AutoencoderKL, Rombach et al. 2022).
"""
