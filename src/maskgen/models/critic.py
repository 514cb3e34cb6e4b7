"""Token-Critic (004): a second transformer that tells real tokens from generated ones.

The same blocks and class conditioning as the generator (``MaskedTransformer`` with one
output per position). Its input is a full token grid, the generator's draws at the
positions that were masked and real tokens elsewhere; its logit is the log-odds that a
token is *real*, so a sampler keeps the high-scored tokens and re-masks the low ones.
It is saved as ``critic.{safetensors,json}`` with the sha256 of the generator it was
trained against.
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from ..errors import MaskgenError
from .transformer import GeneratorConfig, MaskedTransformer


class TokenCritic(MaskedTransformer):
    """``critic(tokens, labels) -> [B, N]`` log-odds that each token is real.

    ``save``/``load`` are the generator's (one checkpoint path), under its own name and kind.
    """

    checkpoint_name = "critic"
    checkpoint_kind = "token_critic"

    def __init__(self, config: GeneratorConfig):
        # maskgen's own layout whatever the generator's (an imported v1 ties its output to
        # the code embeddings, which a one-logit critic does not have)
        super().__init__(replace(config, outputs=1, timestep_input=False, output="linear", stems=False, stem_eps=None))

    @classmethod
    def for_generator(cls, generator: MaskedTransformer, width: int | None = None, depth: int | None = None, heads: int | None = None) -> "TokenCritic":
        c = generator.config
        return cls(replace(c, width=width or c.width, depth=depth or c.depth, heads=heads or c.heads))

    def restore(self, record: dict, base: MaskedTransformer | None, where: str) -> None:
        """With ``base``, check it scores that generator's codes, grid and classes."""
        if base is None:
            return
        c, g = self.config, base.config
        if (c.codebook_size, tuple(c.grid), c.num_classes) != (g.codebook_size, tuple(g.grid), g.num_classes):
            raise MaskgenError(
                f"critic{where} is for {c.codebook_size} codes, grid {c.grid}, {c.num_classes} classes; "
                f"the generator has {g.codebook_size}, {g.grid}, {g.num_classes}"
            )

    def forward(self, tokens: Tensor, labels: Tensor | None, t: Tensor | None = None, top_down=None) -> Tensor:
        return self.run(tokens, labels, None, top_down).logits.squeeze(-1)
