"""The diffusion head and its loss (MAR, eMIGM); its samplers: ``test_head_sampler.py``.

Expected values come from closed forms computed here with numpy (cosine schedule,
posterior, KL, respacing), from a hand-written exact eps for Gaussian data, and for
DPM-Solver++ from ``fixtures/dpm_solver_reference.json``: LuChengTHU's
``dpm_solver_pytorch.py`` (the file eMIGM vendors) run in float64 by
``fixtures/make_dpm_solver_fixture.py``.
"""

import numpy as np
import pytest
import torch
from torch import nn

from maskgen.errors import MaskgenError
from maskgen.models.diffusion_head import CosineNoise, DiffusionHead, denoising_loss, variational_bound_bits



def hand_alphas_cumprod(steps=1000):
    """improved DDPM Eq. 17 with beta capped at 0.999, in numpy."""
    i = np.arange(steps + 1) / steps
    f = np.cos((i + 0.008) / 1.008 * np.pi / 2) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    return betas, np.cumprod(1 - betas)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- schedule ----------------------------------------------------------------------------


def test_cosine_schedule_matches_the_closed_form():
    noise = CosineNoise()
    betas, abar = hand_alphas_cumprod()
    assert noise.betas.dtype == noise.alphas_cumprod.dtype == torch.float64
    np.testing.assert_allclose(noise.betas.numpy(), betas, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(noise.alphas_cumprod.numpy(), abar, rtol=1e-12, atol=1e-18)
    assert float(noise.betas[-1]) == 0.999  # the cap binds on the last step only
    assert float(noise.betas[-2]) < 0.999
    x0, eps = torch.randn(4, 3, generator=gen()), torch.randn(4, 3, generator=gen(1))
    t = torch.tensor([0, 10, 500, 999])
    expected = np.sqrt(abar[t.numpy()])[:, None] * x0.numpy() + np.sqrt(1 - abar[t.numpy()])[:, None] * eps.numpy()
    np.testing.assert_allclose(noise.add_noise(x0, eps, t).numpy(), expected, rtol=1e-5, atol=1e-6)


# -- the network -------------------------------------------------------------------------


def test_head_shapes_init_and_mar_key_names():
    head = DiffusionHead(token_dim=4, cond_dim=6, width=8, depth=2)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    # MAR's (Li et al. 2024) diffloss.net.* keys without the prefix, with their shapes
    expected = {
        "time_embed.mlp.0.weight": (8, 256), "time_embed.mlp.0.bias": (8,),
        "time_embed.mlp.2.weight": (8, 8), "time_embed.mlp.2.bias": (8,),
        "cond_embed.weight": (8, 6), "cond_embed.bias": (8,),
        "input_proj.weight": (8, 4), "input_proj.bias": (8,),
        "final_layer.linear.weight": (8, 8), "final_layer.linear.bias": (8,),
        "final_layer.adaLN_modulation.1.weight": (16, 8), "final_layer.adaLN_modulation.1.bias": (16,),
    }  # fmt: skip
    for i in range(2):
        p = f"res_blocks.{i}."
        expected.update({p + "in_ln.weight": (8,), p + "in_ln.bias": (8,)})
        expected.update({p + f"mlp.{j}.{w}": (8, 8) if w == "weight" else (8,) for j in (0, 2) for w in ("weight", "bias")})
        expected.update({p + "adaLN_modulation.1.weight": (24, 8), p + "adaLN_modulation.1.bias": (24,)})
    assert shapes == expected
    x, t, z = torch.randn(5, 4), torch.tensor([0.0, 1.5, 10.0, 500.0, 999.0]), torch.randn(5, 6)
    assert torch.equal(head(x, t, z), torch.zeros(5, 8))  # zero-initialised output, as MAR's
    for p in head.parameters():
        nn.init.normal_(p, std=0.3)
    out = head(x, t, z)
    assert out.shape == (5, 8) and torch.equal(head.eps(x, t, z), out[:, :4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(head(x, t, z).float()).all()


def test_head_rejects_bad_sizes():
    with pytest.raises(MaskgenError, match="token_dim"):
        DiffusionHead(0, 4, 8, 1)
    with pytest.raises(MaskgenError, match="depth"):
        DiffusionHead(4, 4, 8, 1.5)


@pytest.mark.parametrize("copies", [1, 2, 3])
@pytest.mark.parametrize("same_t", [True, False])
def test_head_at_fixed_conditions_is_its_forward_on_repeated_x(copies, same_t):
    """What samplers call (``head.at(z, copies)(x, t)``: the condition embedded once, one time
    embedding for a shared t, the modulations in one product) is the module's forward on x and
    t repeated once per copy, with trained (non-zero) modulation weights."""
    torch.manual_seed(0)
    head = DiffusionHead(token_dim=6, cond_dim=10, width=16, depth=3)
    for p in head.parameters():
        nn.init.normal_(p, std=0.3)
    m = 7
    z, x = torch.randn(copies * m, 10), torch.randn(m, 6)
    t = torch.full((m,), 412.0) if same_t else torch.rand(m) * 999
    with torch.no_grad():
        expected = head(x.repeat(copies, 1), t.repeat(copies), z)
        prepared = head.at(z, copies)
        got = [prepared(x, t) for _ in range(2)]  # called again at the next head step: nothing consumed
    for g in got:
        assert g.shape == (copies * m, 12)
        torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-5)


# -- the loss ----------------------------------------------------------------------------


class StubHead(nn.Module):
    """eps = a * x_t, v = tanh(b * x_t); records what it was called with."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor(0.7)), nn.Parameter(torch.tensor(0.4))
        self.seen = []

    def forward(self, x, t, z):
        self.seen.append((x.detach().clone(), t.clone(), z.clone()))
        return torch.cat([self.a * x, torch.tanh(self.b * x)], dim=-1)


def hand_kl_bits(x0, x_t, t, eps_pred, v, betas, abar):
    """KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) in bits per dim, Ho et al. 2020 Eq. 7 by hand."""
    ab, ab_prev, beta = abar[t], (abar[t - 1] if t > 0 else 1.0), betas[t]
    coef0, coeft = beta * np.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * np.sqrt(1 - beta) / (1 - ab)
    pv = betas * (1 - np.r_[1.0, abar[:-1]]) / (1 - abar)
    log_pv = np.log(pv[1]) if t == 0 else np.log(pv[t])
    x0_pred = (x_t - np.sqrt(1 - ab) * eps_pred) / np.sqrt(ab)
    m_true, m_model = coef0 * x0 + coeft * x_t, coef0 * x0_pred + coeft * x_t
    frac = (v + 1) / 2
    log_var = frac * np.log(beta) + (1 - frac) * log_pv
    kl = 0.5 * (-1 + log_var - log_pv + np.exp(log_pv - log_var) + (m_true - m_model) ** 2 * np.exp(-log_var))
    return kl.mean(-1) / np.log(2)


def test_loss_is_mse_plus_vb_averaged_over_draws():
    betas, abar = hand_alphas_cumprod()
    head, noise = StubHead(), CosineNoise()
    x0 = torch.randn(4, 3, generator=gen(2))
    z = torch.arange(4.0)[:, None].repeat(1, 2)  # token j has z = j
    loss = denoising_loss(head, noise, x0, z, draws=3, generator=gen(5))
    assert loss.shape == (4,)
    (x_t, t, zz), = head.seen
    x_t, t, token = x_t.double().numpy(), t.long().numpy(), zz[:, 0].long().numpy()
    assert len(t) == 12 and np.bincount(token).tolist() == [3, 3, 3, 3]
    x0n = x0.double().numpy()[token]
    eps_true = (x_t - np.sqrt(abar[t])[:, None] * x0n) / np.sqrt(1 - abar[t])[:, None]
    eps_pred, v = 0.7 * x_t, np.tanh(0.4 * x_t)
    mse = ((eps_true - eps_pred) ** 2).mean(-1)
    assert (t > 0).all()  # a t = 0 draw would need the decoder term, tested below
    vb = np.array([hand_kl_bits(x0n[k], x_t[k], t[k], eps_pred[k], v[k], betas, abar) for k in range(12)])
    per_row = mse + vb
    expected = np.array([per_row[token == j].mean() for j in range(4)])
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=2e-4, atol=1e-5)
    # the VB term reaches the variance output only: d loss / d a is the MSE's derivative
    loss.sum().backward()
    d_mse_da = np.array([(-2 * x_t[k] * (eps_true[k] - eps_pred[k])).mean() for k in range(12)])
    expected_grad = sum(d_mse_da[token == j].mean() for j in range(4))
    assert float(head.a.grad) == pytest.approx(expected_grad, rel=1e-3)
    assert float(head.b.grad) != 0.0
    # same generator, same loss; another seed, another draw
    again = denoising_loss(StubHead(), noise, x0, z, draws=3, generator=gen(5))
    other = denoising_loss(StubHead(), noise, x0, z, draws=3, generator=gen(6))
    assert torch.equal(again, loss.detach()) and not torch.equal(other, loss.detach())


def approx_cdf(x):
    return 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def test_vb_at_step_zero_is_the_discretized_decoder_nll():
    betas, abar = hand_alphas_cumprod()
    noise = CosineNoise()
    x0 = torch.tensor([[-1.0, 0.2, 1.0], [0.5, -0.3, 0.1]], dtype=torch.float64)
    x_t = x0 + 0.01
    eps = torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.4, -0.5]], dtype=torch.float64)
    v = torch.tensor([[0.5, -0.5, 0.0], [0.9, 0.1, -0.9]], dtype=torch.float64)
    got = variational_bound_bits(noise, x0, x_t, torch.tensor([0, 7]), eps, v).numpy()
    # row 0, t = 0: Ho et al. 2020 Eq. 13 with improved DDPM's tanh CDF, edge bins open
    x0n, xt0, e0, v0 = x0[0].numpy(), x_t[0].numpy(), eps[0].numpy(), v[0].numpy()
    mean = (xt0 - np.sqrt(1 - abar[0]) * e0) / np.sqrt(abar[0])  # the posterior mean at t = 0 is x0_pred
    pv1 = betas[1] * (1 - abar[0]) / (1 - abar[1])
    log_var = (v0 + 1) / 2 * np.log(betas[0]) + (1 - (v0 + 1) / 2) * np.log(pv1)
    inv_std = np.exp(-0.5 * log_var)
    plus, minus = approx_cdf(inv_std * (x0n - mean + 1 / 255)), approx_cdf(inv_std * (x0n - mean - 1 / 255))
    logp = np.where(x0n < -0.999, np.log(plus), np.where(x0n > 0.999, np.log(1 - minus), np.log(plus - minus)))
    assert got[0] == pytest.approx(-logp.mean() / np.log(2), rel=1e-6)
    assert got[1] == pytest.approx(hand_kl_bits(x0[1].numpy(), x_t[1].numpy(), 7, eps[1].numpy(), v[1].numpy(), betas, abar), rel=1e-6)


# -- DDPM --------------------------------------------------------------------------------
