"""The diffusion head of continuous-token generators (MAR, eMIGM 002): a small MLP that
denoises one token vector x_t given the generator's condition vector z, its noise schedule
and its training loss.

MAR (Li et al. 2024, "Autoregressive Image Generation without Vector Quantization", Sec. 3.2
and Eq. 2) models p(x | z) of each masked token with a DDPM (Ho et al. 2020) whose noise
predictor is this head; eMIGM (002 Sec. 4) keeps the head unchanged. The head follows
improved DDPM (Nichol & Dhariwal 2021): the cosine schedule (their Eq. 17), a learned
interpolation of the reverse variance between beta_t and the posterior variance (their
Eq. 15), and the hybrid loss L_simple + lambda L_vlb (their Eq. 16; lambda = 0.001 with
T = 1000 steps makes it the MSE plus one VB term L_t) in which the VB term trains only the
variance (their Sec. 3.1, a stop-gradient on the mean).

The parameter names (``time_embed.mlp``, ``cond_embed``, ``input_proj``,
``res_blocks.i.{in_ln, mlp, adaLN_modulation}``, ``final_layer.{linear, adaLN_modulation}``)
are MAR's ``diffloss.net.*`` names, so a published head loads by stripping that prefix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validate import integer

# -- the noise chain ---------------------------------------------------------------------


class GaussianChain:
    """A discrete variance-preserving chain q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t)
    with its closed forms (Ho et al. 2020, Eq. 4, 6, 7), index t = 0..T-1 ("step t + 1").

    Tables are float64 on the CPU; each use casts the needed entries to the tensor it acts
    on, so sampling under bf16 autocast or on a GPU never loses the schedule's precision
    before the final multiply.
    """

    def __init__(self, betas: Tensor):
        self.betas = betas.to(torch.float64)
        self.steps = len(self.betas)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        a, a_prev = self.alphas_cumprod, self.alphas_cumprod_prev
        # posterior q(x_{t-1} | x_t, x_0), Ho et al. 2020 Eq. 7
        self.posterior_variance = self.betas * (1.0 - a_prev) / (1.0 - a)
        self.posterior_mean_coef_x0 = self.betas * a_prev.sqrt() / (1.0 - a)
        self.posterior_mean_coef_xt = (1.0 - a_prev) * (1.0 - self.betas).sqrt() / (1.0 - a)
        # the posterior variance is 0 at t = 0: its log takes the t = 1 value there
        # (improved DDPM's clipping), which only the learned-range interpolation reads
        pv = self.posterior_variance
        self.posterior_log_variance_clipped = torch.log(torch.cat([pv[1:2], pv[1:]])) if self.steps > 1 else torch.log(self.betas)

    @staticmethod
    def _at(table: Tensor, t_index: Tensor | int, like: Tensor) -> Tensor | float:
        """``table[t_index]`` shaped to broadcast over ``like`` [M, d]: a float for one index."""
        if isinstance(t_index, int):
            return float(table[t_index])
        # float64 inputs keep float64 coefficients (tests, CPU); anything else computes in float32
        wide = torch.float64 if like.dtype == torch.float64 else torch.float32
        return table.to(device=like.device, dtype=wide)[t_index].to(like.dtype)[:, None]

    def add_noise(self, x0: Tensor, eps: Tensor, t_index: Tensor | int) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. 2020, Eq. 4)."""
        a = self.alphas_cumprod
        return self._at(a.sqrt(), t_index, x0) * x0 + self._at((1.0 - a).sqrt(), t_index, x0) * eps

    def predict_x0(self, x_t: Tensor, eps: Tensor, t_index: Tensor | int) -> Tensor:
        """x0 implied by a noise prediction: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        a = self.alphas_cumprod
        return self._at((1.0 / a).sqrt(), t_index, x_t) * x_t - self._at((1.0 / a - 1.0).sqrt(), t_index, x_t) * eps

    def posterior_mean(self, x0: Tensor, x_t: Tensor, t_index: Tensor | int) -> Tensor:
        """Mean of q(x_{t-1} | x_t, x0) (Ho et al. 2020, Eq. 7)."""
        return self._at(self.posterior_mean_coef_x0, t_index, x_t) * x0 + self._at(self.posterior_mean_coef_xt, t_index, x_t) * x_t

    def posterior_log_variance(self, t_index: Tensor | int, like: Tensor) -> Tensor | float:
        return self._at(self.posterior_log_variance_clipped, t_index, like)

    def learned_log_variance(self, v: Tensor, t_index: Tensor | int) -> Tensor:
        """The head's log-variance: v in [-1, 1] interpolates log beta_t (v = 1) and the
        clipped log posterior variance (v = -1), improved DDPM Eq. 15 with v = 2 frac - 1."""
        frac = (v + 1.0) / 2.0
        hi = self._at(torch.log(self.betas), t_index, v)
        lo = self._at(self.posterior_log_variance_clipped, t_index, v)
        return frac * hi + (1.0 - frac) * lo


class CosineNoise(GaussianChain):
    """The improved-DDPM cosine schedule (Nichol & Dhariwal 2021, Eq. 17), as MAR and eMIGM use it:

        abar(t) = f(t) / f(0),  f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2,
        beta_t = min(1 - abar(t) / abar(t - 1), max_beta),

    with s = 0.008, max_beta = 0.999 and T = 1000 steps; ``alphas_cumprod`` is the product
    of 1 - beta (so it is abar with the last beta capped).
    """

    def __init__(self, steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999):
        self.offset, self.max_beta = offset, max_beta
        steps = integer("steps", steps, 2, "CosineNoise")

        def f(t: float) -> float:
            return math.cos((t + offset) / (1.0 + offset) * math.pi / 2.0) ** 2

        betas = [min(1.0 - f((i + 1) / steps) / f(i / steps), max_beta) for i in range(steps)]
        super().__init__(torch.tensor(betas, dtype=torch.float64))


# -- the network -------------------------------------------------------------------------


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """[cos, sin] features of the (possibly fractional) step t [M], frequencies
    max_period^(-i / (dim / 2)) as in DDPM's transformer-style step embedding."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


class TimeEmbedding(nn.Module):
    def __init__(self, width: int, frequencies: int = 256):
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t, self.frequencies))


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1.0 + scale) + shift


class AdaLNResBlock(nn.Module):
    """x + gate * MLP(LN(x) * (1 + scale) + shift), (shift, scale, gate) from the condition y."""

    def __init__(self, width: int):
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        # named as MAR names it so its checkpoint keys map by a rename of the prefix only
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(_modulate(self.in_ln(x), shift, scale))


class AdaLNOutput(nn.Module):
    """Affine-free LayerNorm modulated by the condition, then the output projection."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class DiffusionHead(nn.Module):
    """MAR's denoising MLP (Li et al. 2024, Sec. 3.2, "denoising network"): the condition
    y = TimeEmbedding(t) + cond_embed(z) modulates ``depth`` residual AdaLN blocks over
    input_proj(x_t); the output [M, 2 d] holds the noise prediction eps (first d channels)
    and the variance interpolation v in [-1, 1] (last d, see ``GaussianChain.learned_log_variance``).

    ``t`` is the network time: the float step index in [0, 1000) of the training chain.
    """

    def __init__(self, token_dim: int, cond_dim: int, width: int, depth: int):
        super().__init__()
        o = "DiffusionHead"
        self.token_dim = integer("token_dim", token_dim, 1, o)
        self.cond_dim = integer("cond_dim", cond_dim, 1, o)
        self.width = integer("width", width, 1, o)
        self.depth = integer("depth", depth, 1, o)
        self.time_embed = TimeEmbedding(width)
        self.cond_embed = nn.Linear(cond_dim, width)
        self.input_proj = nn.Linear(token_dim, width)
        self.res_blocks = nn.ModuleList(AdaLNResBlock(width) for _ in range(depth))
        self.final_layer = AdaLNOutput(width, 2 * token_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # MAR's (DiT's) initialisation: every modulation and the output start at zero, so a
        # fresh head predicts eps = 0 and the mid-range variance (v = 0)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        for block in self.res_blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for p in (*self.final_layer.adaLN_modulation[-1].parameters(), *self.final_layer.linear.parameters()):
            nn.init.zeros_(p)

    def forward(self, x: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """[eps, v] [M, 2 d] for noisy tokens x [M, d], network times t [M], conditions z [M, cond_dim]."""
        y = self.time_embed(t) + self.cond_embed(z)
        h = self.input_proj(x)
        for block in self.res_blocks:
            h = block(h, y)
        return self.final_layer(h, y)

    def eps(self, x: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """The noise prediction alone [M, d]."""
        return self.forward(x, t, z)[:, : self.token_dim]

    @torch.no_grad()
    def time_embedding(self, t: float, device: torch.device, dtype: torch.dtype) -> Tensor:
        """TimeEmbedding(t) [1, width] for one network time, remembered per (t, device, dtype)
        until a time-embedding weight changes (its storage or its in-place version counter:
        an optimiser step bumps it). For sampling only: the result carries no gradient."""
        first, second = self.time_embed.mlp[0], self.time_embed.mlp[2]  # read each call: .to() may swap them
        key = tuple((p.data_ptr(), p._version) for p in (first.weight, first.bias, second.weight, second.bias))
        cache = self.__dict__.get("_time_cache")
        if cache is None or cache[0] != key:
            cache = (key, {})
            self.__dict__["_time_cache"] = cache
        entry = (t, device, dtype)
        if entry not in cache[1]:
            cache[1][entry] = self.time_embed(torch.full((1,), t, device=device, dtype=dtype))
        return cache[1][entry]

    def at(self, z: Tensor, copies: int = 1) -> "ConditionedHead":
        """The head at fixed conditions z [copies * M, cond_dim], for sampling (``ConditionedHead``)."""
        return ConditionedHead(self, z, copies)


class ConditionedHead:
    """``DiffusionHead.forward`` at fixed conditions z, called once per head step by a sampler.

    The same function as ``head(x.repeat(copies, 1), t.repeat(copies), z)``, computed with what
    does not change across the steps of one draw done once: cond_embed(z); the time embedding
    of one row when every row has the same t (the samplers' case); SiLU(y), which every AdaLN
    modulation reads, once, and all the modulations in one matrix product over their stacked
    weights, with the 1 of each (1 + scale) folded into the bias; input_proj(x) and the first
    block's LayerNorm once for the ``copies`` rows a guided pair shares (the same x under each
    condition), broadcast over them; no module calls in the step (plain tensors). The matrix products stay on the BLAS: at the few hundred rows a head step
    has, oneDNN's fused linear was slower here. Results differ from ``forward`` by float32
    rounding of the sums only. Inference only: nothing here is differentiated.
    """

    def __init__(self, head: DiffusionHead, z: Tensor, copies: int = 1):
        self.head, self.copies = head, integer("copies", copies, 1, "ConditionedHead")
        if len(z) % self.copies:
            raise ValueError(f"{len(z)} conditions do not split into {copies} copies")
        self.cond = head.cond_embed(z)
        layers = [b.adaLN_modulation[-1] for b in head.res_blocks] + [head.final_layer.adaLN_modulation[-1]]
        self.mod_weight = torch.cat([m.weight for m in layers])
        # the 1 of each (1 + scale) folded into its bias, so a modulation is one addcmul
        w = head.width
        one = [torch.cat([torch.zeros(w), torch.ones(w), torch.zeros(m.out_features - 2 * w)]) for m in layers]
        self.mod_bias = torch.cat([m.bias for m in layers]) + torch.cat(one).to(layers[0].bias)
        self.mod_sizes = [m.out_features for m in layers]
        # plain tensors for the step loop: a module call costs more than these small products
        self.input = (head.input_proj.weight, head.input_proj.bias)
        self.blocks = [((b.in_ln.weight, b.in_ln.bias, b.in_ln.eps), (b.mlp[0].weight, b.mlp[0].bias), (b.mlp[2].weight, b.mlp[2].bias))
                       for b in head.res_blocks]
        f = head.final_layer
        self.final = (f.norm_final.eps, f.linear.weight, f.linear.bias)
        self.width = head.width

    def _time(self, t: Tensor) -> Tensor:
        """The time embedding [1, w] of a t all rows share (remembered per t value while the
        head's weights stay as they are: a sampler asks for the same head steps at every mask
        step), else [M, w]."""
        if len(t) and bool((t == t[0]).all()):
            return self.head.time_embedding(float(t[0]), t.device, t.dtype)
        m = self.head.time_embed.mlp
        return m[2](F.silu(m[0](sinusoidal_embedding(t, self.head.time_embed.frequencies))))

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """[eps, v] [copies * M, 2 d] for x [M, d], t [M] (one t per token, as ``forward``'s)."""
        temb = self._time(t)
        y = F.silu(self.cond + (temb.repeat(self.copies, 1) if len(temb) > 1 else temb))
        mods = F.linear(y, self.mod_weight, self.mod_bias).split(self.mod_sizes, dim=-1)
        h = F.linear(x, *self.input)  # [M, w]: the x every copy shares
        shape, c, m = (self.width,), self.copies, len(x)
        for i, (((ln_w, ln_b, eps), fc1, fc2), mod) in enumerate(zip(self.blocks, mods)):
            shift, scale1, gate = mod.chunk(3, dim=-1)  # scale1 = 1 + scale
            if i == 0 and c > 1:  # the first block normalises the shared x once, broadcast over the copies
                shift, scale1, gate = (v.reshape(c, m, self.width) for v in (shift, scale1, gate))
            hidden = F.silu(F.linear(torch.addcmul(shift, F.layer_norm(h, shape, ln_w, ln_b, eps), scale1), *fc1))
            h = torch.addcmul(h, gate, F.linear(hidden, *fc2)).reshape(c * m, self.width)
        eps, w, b = self.final
        shift, scale1 = mods[-1].chunk(2, dim=-1)
        return F.linear(torch.addcmul(shift, F.layer_norm(h, shape, None, None, eps), scale1), w, b)


# -- the loss ----------------------------------------------------------------------------


def _normal_kl(mean1: Tensor, logvar1: Tensor | float, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_normal_cdf(x: Tensor) -> Tensor:
    # the tanh approximation improved DDPM's decoder uses; kept so the VB term is theirs
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) per element under N(mean, e^(2 log_scale)) binned to width 2/255 on [-1, 1],
    the open end bins reaching to -inf and +inf (Ho et al. 2020, Eq. 13)."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def variational_bound_bits(noise: GaussianChain, x0: Tensor, x_t: Tensor, t_index: Tensor, eps: Tensor, v: Tensor) -> Tensor:
    """The VB term L_{t-1} per token [M] in bits per dimension (improved DDPM Sec. 2.1):
    KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) for t > 0, the decoder's -log p(x0 | x_1) at t = 0."""
    true_mean = noise.posterior_mean(x0, x_t, t_index)
    true_log_var = noise.posterior_log_variance(t_index, x_t)
    model_mean = noise.posterior_mean(noise.predict_x0(x_t, eps, t_index), x_t, t_index)
    model_log_var = noise.learned_log_variance(v, t_index)
    kl = _normal_kl(true_mean, true_log_var, model_mean, model_log_var).mean(-1)
    nll = -_discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var).mean(-1)
    return torch.where(t_index == 0, nll, kl) / math.log(2.0)


class GivenNoise:
    """Given (t, eps) for ``denoising_loss`` in place of a generator: t [draws * M] step indices
    and eps [draws * M, d], in its order (draw-major, masked tokens row by row). A test feeds
    another implementation's noise with it (MAR's and eMIGM's code draw one (t, eps) per
    token and repeat, ``diffusion_batch_mul``)."""

    def __init__(self, t: Tensor, eps: Tensor):
        self.t, self.eps = t, eps
        self.device = torch.device("cpu")


def denoising_loss(head: nn.Module, noise: GaussianChain, x0: Tensor, z: Tensor, draws: int, generator: "torch.Generator | GivenNoise") -> Tensor:
    """Per-token loss [M] of MAR's diffusion loss (Li et al. 2024, Eq. 2 plus improved DDPM's
    hybrid objective, Sec. 3.1): ||eps - eps_theta||^2 averaged over the d dimensions, plus the
    VB term computed with eps_theta detached so it trains only the variance output. Averaged
    over ``draws`` independent (t, eps) pairs per token (MAR's ``diffusion_batch_mul``), t
    uniform over the chain's steps. Every draw comes from ``generator`` (or is given, ``GivenNoise``)."""
    draws = integer("draws", draws, 1, "denoising_loss")
    m, d = x0.shape
    x0 = x0.float().repeat(draws, 1)
    z = z.repeat(draws, 1)
    gen_device = generator.device
    if isinstance(generator, GivenNoise):
        t, eps = generator.t.to(x0.device), generator.eps.to(x0.device, torch.float32)
    else:
        t = torch.randint(0, noise.steps, (draws * m,), generator=generator, device=gen_device).to(x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=gen_device).to(x0.device)
    x_t = noise.add_noise(x0, eps, t)
    eps_pred, v = head(x_t, t.float(), z).float().split(d, dim=-1)
    mse = ((eps - eps_pred) ** 2).mean(-1)
    vb = variational_bound_bits(noise, x0, x_t, t, eps_pred.detach(), v)
    return (mse + vb).view(draws, m).mean(0)
