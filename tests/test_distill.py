"""Di[M]O distillation (Zhu et al. 2025): the divergence and its gradient by hand, the two
phases' losses against independent recomputations, the token initialisation's distribution,
a frozen teacher, seeded and resumable runs, and the refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy.stats import binomtest, chisquare

from conftest import tiny_generator
from maskgen.checkpoint import file_sha256
from maskgen.cli import main
from maskgen.errors import MaskgenError
from maskgen.models.one_step import OneStepStudent, StudentInit, initial_tokens
from maskgen.training.context import ReplayContext
from maskgen.training.distill import ClassLabels, DistillConfig, DistillObjective, DistillPair, divergence
from maskgen.training.distill_run import distill, load_teacher
from maskgen.training.trainer import Trainer, TrainConfig

TRAIN = dict(steps=4, batch_size=8, log_every=1, lr=1e-3, min_lr=1e-3, warmup=1, ema=0.9, save_every=2)


@pytest.fixture
def teacher_dir(tmp_path):
    tiny_generator(depth=1).save(tmp_path / "teacher")
    return tmp_path / "teacher"


# -- the divergence --------------------------------------------------------------------------
PHI, PSI = [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]  # teacher and auxiliary distributions over K = 3 codes


def test_divergences_and_gradients_by_hand():
    """FKL = sum p log(p/q) and g = q - p; RKL = sum q log(q/p) and g_k = q_k (log(q_k/p_k) - RKL);
    the generalized Jeffrey divergence (1 - b) FKL + b RKL, with p = teacher, q = auxiliary."""
    t, a = torch.tensor([PHI]).log(), torch.tensor([PSI]).log()
    fkl = sum(p * math.log(p / q) for p, q in zip(PHI, PSI))
    rkl = sum(q * math.log(q / p) for p, q in zip(PHI, PSI))
    assert fkl == pytest.approx(0.360063, abs=1e-6) and rkl == pytest.approx(0.394816, abs=1e-6)
    g_fkl = [q - p for p, q in zip(PHI, PSI)]  # [-0.3, -0.1, 0.4]
    g_rkl = [q * (math.log(q / p) - rkl) for p, q in zip(PHI, PSI)]  # [-0.262221, -0.160056, 0.422278]
    assert g_rkl == pytest.approx([-0.262221, -0.160056, 0.422278], abs=1e-6)
    for kind, beta, d_want, g_want in (
        ("fkl", 0.5, fkl, g_fkl),
        ("rkl", 0.5, rkl, g_rkl),
        ("jeffrey", 0.25, 0.75 * fkl + 0.25 * rkl, [0.75 * x + 0.25 * y for x, y in zip(g_fkl, g_rkl)]),
    ):
        d, g = divergence(t, a, kind, beta)
        assert d.item() == pytest.approx(d_want, abs=1e-6), kind
        assert g[0].tolist() == pytest.approx(g_want, abs=1e-6), kind
        # the same gradient by autograd through the divergence written out in the logits
        z = a.clone().requires_grad_(True)
        p, q = t.softmax(-1), z.softmax(-1)
        value = (1 - {"fkl": 0, "rkl": 1, "jeffrey": beta}[kind]) * (p * (p.log() - q.log())).sum() + {"fkl": 0, "rkl": 1, "jeffrey": beta}[kind] * (q * (q.log() - p.log())).sum()
        value.backward()
        assert g[0].tolist() == pytest.approx(z.grad[0].tolist(), abs=1e-6), kind


def test_a_divergence_is_zero_where_the_models_agree():
    logits = torch.randn(2, 5, 7)
    for kind in ("fkl", "rkl", "jeffrey"):
        d, g = divergence(logits, logits + 3.0, kind)  # a constant shift: the same distribution
        assert d.abs().max() < 1e-5 and g.abs().max() < 1e-6


# -- the two phases -------------------------------------------------------------------------
def replay(*draws, b=4, phase="student"):
    return ReplayContext(step=0, rng=torch.Generator(), rows=slice(0, b), global_batch=b, phase=phase, given=list(draws))


def phase_draws(b, n, gen, t=0.7):
    """The draws of one phase in order: label drop, x_init scores and codes, the token draw,
    x_t's time and mask scores."""
    r = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    return [r(b), r(b, n), r(b, n), r(b, n), torch.full((b,), t, dtype=torch.float64), r(b, n)]


def drawn(logits, u):
    """x ~ softmax(logits) by inverse CDF: the first code whose cumulative probability exceeds u."""
    cdf = logits.float().softmax(-1).cumsum(-1)
    return (cdf > u[..., None]).float().argmax(-1)


def capture(module):
    seen = {}

    def hook(m, args, out):
        seen["input"], seen["output"] = args[0], out
        if out.requires_grad:
            out.retain_grad()

    module.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("cfg", [0.0, 1.5])
def test_student_gradient_is_the_divergence_gradient_at_masked_positions(cfg):
    """d loss / d z_theta = (p_psi - p_phi) / B at the positions masked in x_t, 0 elsewhere
    (FKL); p_phi the teacher's guided prediction uncond + (1 + s)(cond - uncond) at x_t."""
    teacher = tiny_generator(depth=1)
    config = DistillConfig(cfg=cfg)
    pair = DistillPair.from_teacher(teacher, config)
    torch.manual_seed(1)
    with torch.no_grad():  # the auxiliary model must differ from the teacher for a non-zero gradient
        for p in pair.aux.parameters():
            p.add_(0.05 * torch.randn_like(p))
    obj = DistillObjective(config, teacher)
    b, n = 4, teacher.config.num_tokens
    labels = torch.tensor([0, 1, 2, 1])
    student_seen, aux_seen = capture(pair.student), capture(pair.aux)
    loss, metrics = obj(pair, (labels,), replay(*phase_draws(b, n, torch.Generator().manual_seed(0))))
    loss.backward()
    z = student_seen["output"]
    x_t = aux_seen["input"]
    mask = x_t == teacher.mask_id
    assert mask.any() and (~mask).any()
    with torch.no_grad():
        cond = teacher(x_t, labels).float()
        uncond = teacher(x_t, torch.full_like(labels, teacher.null_class)).float()
        phi = (uncond + (1 + cfg) * (cond - uncond)).softmax(-1)
        psi = pair.aux(x_t, labels).float().softmax(-1)
    want = torch.where(mask[..., None], psi - phi, 0.0) / b
    assert torch.allclose(z.grad, want, atol=1e-7)
    assert loss.item() == pytest.approx(0.5 * (want * b).pow(2).sum().item() / b, rel=1e-5)
    assert all(p.grad is None for p in pair.aux.parameters())  # the student's phase trains the student only


def test_aux_loss_is_cross_entropy_on_the_student_tokens_at_masked_positions():
    teacher = tiny_generator(depth=1)
    config = DistillConfig()
    pair = DistillPair.from_teacher(teacher, config)
    obj = DistillObjective(config, teacher)
    b, n = 4, teacher.config.num_tokens
    labels = torch.tensor([2, 0, 1, 1])
    draws = phase_draws(b, n, torch.Generator().manual_seed(3), t=0.5)
    student_seen, aux_seen = capture(pair.student), capture(pair.aux)
    loss, metrics = obj(pair, (labels,), replay(*draws, phase="aux"))
    x_theta = drawn(student_seen["output"], draws[3])  # the student's tokens, drawn independently here
    x_t, logits = aux_seen["input"], aux_seen["output"].float()
    mask = x_t == teacher.mask_id
    assert torch.equal(torch.where(mask, x_theta, x_t), x_theta)  # x_t is x_theta with a mask
    nll = -logits.log_softmax(-1).gather(-1, x_theta[..., None]).squeeze(-1)
    assert loss.item() == pytest.approx((nll[mask].sum() / mask.sum()).item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is None for p in pair.student.parameters())


# -- the token initialisation ---------------------------------------------------------------
def test_r_init_mix_count_and_bernoulli():
    b, n, k, r = 4000, 16, 10, 0.6
    gen = torch.Generator().manual_seed(0)
    blank = torch.full((b, n), k, dtype=torch.long)
    where = torch.ones_like(blank, dtype=torch.bool)
    draws = lambda: (torch.rand(b, n, generator=gen), torch.rand(b, n, generator=gen))  # noqa: E731

    x = initial_tokens(blank, where, StudentInit(r, "count"), k, k, *draws())
    masked = x == k
    assert (masked.sum(1) == round(n * r)).all()  # exactly round(16 * 0.6) = 10 per image
    for pos in range(n):  # every position equally likely to hold [MASK]: a binomial per position
        assert binomtest(int(masked[:, pos].sum()), b, round(n * r) / n).pvalue > 1e-4
    codes = x[~masked]
    assert chisquare(torch.bincount(codes, minlength=k).numpy()).pvalue > 1e-4  # the rest uniform over the codes

    x = initial_tokens(blank, where, StudentInit(r, "bernoulli"), k, k, *draws())
    masked = x == k
    assert binomtest(int(masked.sum()), b * n, r).pvalue > 1e-4
    assert masked.sum(1).unique().numel() > 3  # counts vary from image to image
    assert chisquare(torch.bincount(x[~masked], minlength=k).numpy()).pvalue > 1e-4


def test_initial_tokens_keep_given_positions():
    base = torch.arange(12).view(2, 6) % 5
    where = torch.tensor([[True, False, True, False, True, True], [False] * 5 + [True]])
    x = initial_tokens(base, where, StudentInit(0.5), 9, 5, torch.rand(2, 6), torch.rand(2, 6))
    assert torch.equal(x[~where], base[~where])
    assert int((x[0] == 9).sum()) == 2 and int((x[1] == 9).sum()) == 0  # round(4 * 0.5), round(1 * 0.5) = 0 (half to even)


# -- runs ---------------------------------------------------------------------------------------
def test_teacher_bit_identical_and_only_the_student_saved(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    config = DistillConfig(cfg=1.0)
    pair = DistillPair.from_teacher(teacher, config)
    start = {k: v.clone() for k, v in pair.state_dict().items()}
    trainer = Trainer(pair, DistillObjective(config, teacher), ClassLabels(3, 9), TrainConfig(**TRAIN), tmp_path / "out",
                      save_model=lambda m, f: m.student.save(f))
    trainer.fit(progress=False)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())
    moved = [k for k, v in pair.state_dict().items() if not torch.equal(start[k], v)]
    assert any(k.startswith("student.") for k in moved) and any(k.startswith("aux.") for k in moved)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoints", "one-step.json", "one-step.safetensors"]
    assert file_sha256(teacher_dir / "generator.safetensors") == teacher.sha256


def test_seeded_distillation_reproduces_and_resumes_bit_for_bit(teacher_dir, tmp_path):
    config, train = DistillConfig(embed_noise=0.1, cfg=1.0), TrainConfig(**TRAIN)
    distill(teacher_dir, tmp_path / "a", config, train, progress=False)
    distill(teacher_dir, tmp_path / "b", config, train, progress=False)
    distill(teacher_dir, tmp_path / "c", config, train, progress=False, until=2)  # as if killed after step 2
    student, record = distill(teacher_dir, tmp_path / "c", config, train, progress=False, resume=True)
    sha = {d: file_sha256(tmp_path / d / "one-step.safetensors") for d in "abc"}
    assert sha["a"] == sha["b"] == sha["c"]
    state = lambda d: json.loads(next((tmp_path / d / "checkpoints").iterdir()).joinpath("train_state.json").read_text())  # noqa: E731
    assert state("a")["history"] == state("c")["history"]
    assert student.teacher_sha256 == file_sha256(teacher_dir / "generator.safetensors") == record["teacher_sha256"]
    distill(teacher_dir, tmp_path / "d", config, TrainConfig(**{**TRAIN, "seed": 1}), progress=False)
    assert file_sha256(tmp_path / "d" / "one-step.safetensors") != sha["a"]


def test_student_refuses_another_teacher(teacher_dir, tmp_path):
    distill(teacher_dir, tmp_path / "out", DistillConfig(), TrainConfig(**{**TRAIN, "steps": 1}), progress=False)
    teacher = load_teacher(teacher_dir)
    assert OneStepStudent.load(tmp_path / "out", teacher).init == StudentInit()
    other = tiny_generator(seed=5, depth=1)
    other.save(tmp_path / "other")
    with pytest.raises(MaskgenError, match=r"distilled from generator sha256 [0-9a-f]{12}\.\.\., not from this one"):
        OneStepStudent.load(tmp_path / "out", load_teacher(tmp_path / "other"))
    with pytest.raises(MaskgenError, match="another layout"):
        OneStepStudent.load(tmp_path / "out", tiny_generator(depth=2))


# -- the verb -------------------------------------------------------------------------------
def test_distill_verb_writes_the_student_and_refuses_in_one_line(teacher_dir, tmp_path, capsys):
    args = ["--steps", "2", "--batch-size", "6", "--log-every", "1", "--warmup", "1"]
    assert main(["distill", "--model", str(teacher_dir), "--out", str(tmp_path / "s"), "--preset", "dimo", *args]) == 0
    record = json.loads((tmp_path / "s" / "one-step.json").read_text())
    assert record["objective"]["embed_noise"] == 0.1 and record["objective"]["preset"] == "dimo"
    assert record["init"] == {"r_init": 0.6, "mix": "count", "embed_noise": 0.1}
    assert "--sampler one-step --student" in capsys.readouterr().out
    # a second run into the same folder: continue or replace it, never silently
    assert main(["distill", "--model", str(teacher_dir), "--out", str(tmp_path / "s"), *args]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["distill", "--model", str(teacher_dir), "--out", str(tmp_path / "s"), "--resume", "--r-init", "0.3", *args]) == 2
    assert "r_init 0.6 -> 0.3" in capsys.readouterr().err

    (tmp_path / "cont").mkdir()
    (tmp_path / "cont" / "generator.json").write_text(json.dumps({"kind": "continuous_generator", "config": {}}))
    for argv, phrase in (
        (["--model", str(tmp_path / "cont"), "--out", str(tmp_path / "x")], "continuous-token generator"),
        (["--model", str(teacher_dir), "--out", str(tmp_path / "y"), "--divergence", "tv"], "unknown divergence 'tv'"),
        (["--model", str(teacher_dir), "--out", str(tmp_path / "y"), "--beta", "0.3"], "no effect with divergence fkl"),
        (["--model", str(teacher_dir), "--out", str(tmp_path / "y"), "--r-init", "1.5"], "r_init must be in [0, 1]"),
        (["--model", str(teacher_dir), "--out", str(tmp_path / "y"), "--preset", "nope"], "unknown distillation preset 'nope'"),
    ):
        assert main(["distill", *argv, *args]) == 2
        err = capsys.readouterr().err
        assert phrase in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_embedding_noise_is_s_eps_plus_sqrt_1_minus_s2_e_in_the_student_pass_only():
    import copy

    teacher = tiny_generator()
    student = OneStepStudent.for_teacher(teacher, StudentInit(embed_noise=0.1))
    x = torch.randint(0, 17, (3, teacher.config.num_tokens), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 3])
    with torch.no_grad():
        assert torch.equal(student.one_step(x, labels, None), teacher(x, labels))  # no draws: the teacher's copy
        # eps = 0 leaves sqrt(1 - 0.01) e: the teacher with its code embeddings scaled so
        scaled = copy.deepcopy(teacher)
        scaled.tok_emb.weight.mul_(math.sqrt(1 - 0.01))
        zero = torch.zeros(3, teacher.config.num_tokens, teacher.config.width)
        assert torch.allclose(student.one_step(x, labels, zero), scaled(x, labels), atol=1e-6)
        assert not torch.allclose(student.one_step(x, labels, torch.randn_like(zero)), teacher(x, labels), atol=1e-3)
        assert torch.equal(student(x, labels), teacher(x, labels))  # a plain pass after it: no noise left
