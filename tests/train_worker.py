"""Trains a tiny generator with the shared Trainer; run directly or under torchrun (tests)."""

import sys

import torch

from maskgen.data import TokenDataset
from maskgen.models.transformer import GeneratorConfig, MaskedTransformer
from maskgen.training.masking import MaskedObjectiveConfig, MaskedTokenObjective
from maskgen.training.trainer import Trainer, TrainConfig


def tiny_setup(out, steps, lr=3e-3, stop=None, ema=0.9, masking="count", weighting="one", save_every=1000, accumulate=1):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(64) % 3
    # learnable structure: each class has its own pattern, with a few random tokens
    tokens = (labels[:, None] * 5 + torch.arange(16)) % 16
    noise = torch.rand(64, 16, generator=g) < 0.2
    tokens = torch.where(noise, torch.randint(0, 16, (64, 16), generator=g), tokens).view(64, 4, 4)
    data = TokenDataset.from_tensors(tokens, labels, 16, ["a", "b", "c"])
    cfg = GeneratorConfig(codebook_size=16, grid=(4, 4), num_classes=3, width=32, depth=2, heads=2)
    model = MaskedTransformer(cfg)
    objective = MaskedTokenObjective(MaskedObjectiveConfig(masking=masking, weighting=weighting), cfg.mask_id, 3)
    train = TrainConfig(steps=steps, batch_size=16, lr=lr, warmup=2, ema=ema, save_every=save_every, log_every=1, seed=5, accumulate=accumulate)
    return Trainer(model, objective, data, train, out, save_model=lambda m, f: m.save(f))


if __name__ == "__main__":
    torch.set_num_threads(1)
    trainer = tiny_setup(sys.argv[1], int(sys.argv[2]), accumulate=int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    trainer.fit(progress=False)
