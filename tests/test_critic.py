"""Token-Critic (004): training, the critic fill rule, refinement, classifier rejection."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from maskgen.cli import main
from maskgen.errors import MaskgenError
from maskgen.models.critic import TokenCritic
from maskgen.models.transformer import MaskedTransformer
from conftest import build_sampler
from maskgen.sampling import DiscreteDenoiser, Proposal, Sampler, Step, TokenDraw
from maskgen.sampling.fills.critic import CriticFill
from maskgen.sampling.rejection import ClassifierRejection
from maskgen.schedules import get_schedule
from maskgen.training.critic import CriticObjective, CriticObjectiveConfig, auc, critic_auc


class PositionCritic(nn.Module):
    """Scores each position by a fixed number: position i has log-odds ``order[i]``."""

    def __init__(self, order):
        super().__init__()
        self.order = torch.as_tensor(order, dtype=torch.float32)
        self.calls = 0

    def forward(self, tokens, labels, t=None):
        self.calls += 1
        return self.order.expand(len(tokens), -1).clone()


def test_critic_rule_can_remask_an_accepted_token(generator):
    n, k = generator.config.num_tokens, generator.mask_id
    order = torch.arange(n, dtype=torch.float32)
    order[n - 1] = -100.0  # the critic distrusts the last position most
    fill = CriticFill(PositionCritic(order), noise=0.0, temperature=(0.0, 1.0))
    x = torch.full((2, n), k)
    x[:, n - 1] = 3  # accepted at an earlier step
    candidates = torch.randint(0, generator.config.codebook_size, (2, n))
    step = Step(2, 8, 0.75, 0.625, get_schedule("cosine"))
    p = Proposal(x, x == k, candidates, torch.zeros(2, n), torch.zeros(2, dtype=torch.long))
    out = fill(DiscreteDenoiser(generator), p, step, torch.Generator().manual_seed(0))
    assert (out[:, n - 1] == k).all()  # revoked
    assert ((out == k).sum(1) == int(np.ceil(n * step.gamma_s))).all()


@pytest.mark.parametrize("steps", [1, 4, 9])
def test_critic_sampling_ends_unmasked_and_counts_critic_passes(generator, steps):
    critic = TokenCritic.for_generator(generator).eval()
    s = build_sampler(generator, critic, sampler="critic", critic_noise=1.0, critic_temperature=(1.0, 0.5), steps=steps)
    r = s(torch.tensor([0, 1, 2, 0]), torch.Generator().manual_seed(0))
    assert not (r.tokens == generator.mask_id).any()
    assert r.settings["nfe_generator"] == steps and r.settings["nfe_critic"] == steps - 1
    assert r.nfe == 2 * steps - 1
    # composes with guidance: CFG doubles the generator rows, not the critic's
    s = build_sampler(generator, critic, sampler="critic", steps=steps, cfg=2.0)
    r = s(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert r.settings["nfe_generator"] == 2 * steps and r.settings["nfe_critic"] == steps - 1


def test_refinement_changes_only_low_scored_positions(generator):
    n, k = generator.config.num_tokens, generator.mask_id
    order = torch.randperm(n, generator=torch.Generator().manual_seed(3)).float()
    critic = PositionCritic(order)
    low = order < np.ceil(0.6 * n)  # the 60% lowest-scored positions
    init = torch.randint(0, generator.config.codebook_size, (5, n), generator=torch.Generator().manual_seed(1))
    s = build_sampler(generator, critic, sampler="critic", critic_noise=0.0, steps=9, schedule="0.6*cosine")
    r = s(torch.tensor([0, 1, 2, 0, 1]), torch.Generator().manual_seed(0), init=init)
    assert r.tokens.shape == init.shape and not (r.tokens == k).any()
    changed = r.tokens != init
    assert changed.any() and not (changed & ~low).any()
    assert r.masked_per_step[0][0] <= int(np.ceil(0.6 * n))


def test_critic_temperature_and_selection_noise_by_hand(generator):
    # Token-Critic Alg. 2 with T = 4: t/T = 1, 3/4, 1/2, 1/4 at the four steps
    fill = CriticFill(PositionCritic(torch.zeros(16)), noise=3.0, temperature=(2.0, 0.5))
    steps = [Step(i, 4, (4 - i) / 4, (3 - i) / 4, get_schedule("cosine")) for i in range(4)]
    assert [fill.temperature(s) for s in steps] == [2.5, 2.0, 1.5, 1.0]  # a t/T + b
    # scores: sigmoid(0) = 1/2 plus K u (t/T), u ~ U[-1/2, 1/2] from the sampling generator
    x = torch.zeros(2, 16, dtype=torch.long)
    scores = fill.scores(x, torch.zeros(2, dtype=torch.long), 0.75, torch.Generator().manual_seed(9))
    u = torch.rand((2, 16), generator=torch.Generator().manual_seed(9)) - 0.5
    torch.testing.assert_close(scores, 0.5 + 3.0 * u * 0.75)


def test_critic_temperature_replaces_the_draw_temperature(generator):
    critic = TokenCritic.for_generator(generator).eval()
    seen = []
    s = build_sampler(generator, critic, sampler="critic", critic_temperature=(2.0, 0.5), steps=4)
    draw = s.model.draw

    def spy(strong, weaks, scales, d, g, last, temperature=None):
        seen.append(temperature)
        return draw(strong, weaks, scales, d, g, last, temperature)

    s.model.draw = spy
    s(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert seen == [2.5, 2.0, 1.5, 1.0] and s.draw.temperature == 1.0


def test_rejection_keeps_the_best_scored_candidate():
    class Brightness(nn.Module):  # class 1 logit = mean brightness, class 0 = minus it
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, images):
            m = images.float().mean(dim=(1, 2, 3)) / 255.0  # unsaturated softmax
            return torch.stack([-m, m], 1)

    rej = ClassifierRejection.from_acceptance(Brightness(), 0.25)
    assert rej.candidates == 4
    images = torch.randint(0, 256, (4 * 3, 1, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([1, 0, 1]).repeat(4)
    keep = rej.select(images, labels)
    bright = images.float().mean(dim=(1, 2, 3)).view(4, 3)
    assert torch.equal(keep, torch.stack([bright[:, 0].argmax() * 3, bright[:, 1].argmin() * 3 + 1, bright[:, 2].argmax() * 3 + 2]))
    with pytest.raises(MaskgenError, match="acceptance"):
        ClassifierRejection.from_acceptance(Brightness(), 0.0)


def test_auc_is_the_rank_probability():
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert auc(np.array([1.0, 3.0]), np.array([2.0, 0.0])) == 0.75


def test_train_critic_beats_chance_on_heldout_fills(model_dir, tmp_path, capsys):
    out = tmp_path / "critic"
    args = ["train-critic", "--model", str(model_dir), "--out", str(out), "--steps", "40", "--batch-size", "32",
            "--width", "32", "--depth", "1", "--heads", "2", "--lr", "3e-3", "--warmup", "5", "--heldout", "300"]
    assert main(args) == 0
    assert "AUC" in capsys.readouterr().out
    trained = json.loads((out / "metrics.json").read_text())["auc"]
    generator = MaskedTransformer.load(model_dir)
    untrained = TokenCritic.for_generator(generator, 32, 1, 2).eval()
    from maskgen.tokenizers import VQTokenizer
    from maskgen.training import token_dataset

    tokens, labels = token_dataset("embedded", VQTokenizer.load(model_dir), progress=False).to_tensors()
    held = tokens[-300:].reshape(300, -1)
    chance = critic_auc(untrained, CriticObjective(CriticObjectiveConfig(), generator), held, labels[-300:])
    assert trained > 0.6 and trained > chance + 0.1, (trained, chance)


def test_sample_refine_and_reject_from_the_cli(model_dir, tmp_path, capsys):
    critic = tmp_path / "critic"
    assert main(["train-critic", "--model", str(model_dir), "--out", str(critic), "--steps", "2", "--batch-size", "16", "--heldout", "100"]) == 0
    base = ["--model", str(model_dir), "--critic", str(critic)]
    assert main(["sample", *base, "--num", "6", "--steps", "4", "--sampler", "critic", "--critic-noise", "2", "--out", str(tmp_path / "c")]) == 0
    assert "generator 4 + critic 3" in capsys.readouterr().out
    assert main(["sample", "--model", str(model_dir), "--num", "6", "--steps", "4", "--out", str(tmp_path / "m")]) == 0
    assert main(["refine", *base, "--samples", str(tmp_path / "m" / "samples.npz"), "--out", str(tmp_path / "r")]) == 0
    before, after = np.load(tmp_path / "m" / "samples.npz"), np.load(tmp_path / "r" / "samples.npz")
    assert after["images"].shape == before["images"].shape and (after["labels"] == before["labels"]).all()
    assert "refined" in capsys.readouterr().out
    # without --model: the model the samples' samples.json records, else the shipped one, as every verb defaults
    assert main(["refine", "--critic", str(critic), "--samples", str(tmp_path / "m" / "samples.npz"), "--out", str(tmp_path / "r2")]) == 0
    assert json.loads((tmp_path / "r2" / "samples.json").read_text())["model"] == str(model_dir.resolve())
    assert np.array_equal(np.load(tmp_path / "r2" / "samples.npz")["tokens"], after["tokens"])
    assert main(["sample", "--num", "2", "--steps", "2", "--out", str(tmp_path / "shipped")]) == 0
    (tmp_path / "shipped" / "samples.json").unlink()
    assert main(["refine", "--samples", str(tmp_path / "shipped" / "samples.npz"), "--steps", "2", "--out", str(tmp_path / "r3")]) == 0
    from maskgen.pipelines import reference_dir

    assert json.loads((tmp_path / "r3" / "samples.json").read_text())["model"] == str(reference_dir().resolve())
    clf = tmp_path / "clf"
    assert main(["train-classifier", "--data", "embedded", "--out", str(clf), "--steps", "2", "--batch-size", "16", "--width", "8"]) == 0
    assert main(["sample", "--model", str(model_dir), "--num", "4", "--steps", "2", "--acceptance", "0.5",
                 "--rejection-classifier", f"classifier:{clf}", "--out", str(tmp_path / "rej")]) == 0
    record = json.loads((tmp_path / "rej" / "samples.json").read_text())
    assert record["num"] == 4 and record["nfe"] == 4 and record["settings"]["acceptance"] == 0.5  # 2 candidates x 2 steps
    assert main(["sample", "--model", str(model_dir), "--num", "2", "--sampler", "critic", "--out", str(tmp_path / "x")]) == 2
    assert "train-critic" in capsys.readouterr().err
    assert main(["sample", "--model", str(model_dir), "--num", "2", "--acceptance", "0.5", "--out", str(tmp_path / "x")]) == 2
