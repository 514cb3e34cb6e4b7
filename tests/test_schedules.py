import math

import pytest
import torch

from maskgen.errors import MaskgenError
from maskgen.schedules import get_schedule, schedule_names

NAMES = schedule_names() + ["cubic(0.5,1.5)", "cubic(1,2)"]


@pytest.mark.parametrize("name", NAMES)
def test_boundaries_and_monotone(name):
    s = get_schedule(name)
    assert float(s.gamma(0.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(s.gamma(1.0)) == pytest.approx(1.0, abs=1e-12)
    g = s.gamma(torch.linspace(0, 1, 201, dtype=torch.float64))
    assert (g.diff() >= -1e-12).all()


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_differences(name):
    s = get_schedule(name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    fd = (s.gamma(t + h) - s.gamma(t - h)) / (2 * h)
    assert torch.allclose(s.derivative(t), fd, rtol=1e-5, atol=1e-6)


def test_closed_forms_from_the_papers():
    t = torch.tensor([0.3, 0.6], dtype=torch.float64)
    # 002 Table 4: cosine gamma = cos(pi/2 (1 - t)); exp normalised to hit 1 at t=1
    assert torch.allclose(get_schedule("cosine").gamma(t), torch.cos(math.pi / 2 * (1 - t)))
    assert torch.allclose(get_schedule("exp").gamma(t), (1 - torch.exp(-5 * t)) / (1 - math.exp(-5)))
    assert torch.allclose(get_schedule("log-exp").gamma(t), torch.log(1 + (math.e**5 - 1) * t) / 5)
    # 003 Table 1 in kappa form: gamma(t) = 1 - kappa(1 - t)
    assert torch.allclose(get_schedule("root").gamma(t), 1 - torch.sqrt(1 - t))
    assert torch.allclose(get_schedule("quadratic").gamma(t), 1 - (1 - t) ** 2)
    assert torch.allclose(get_schedule("arccos").gamma(t), 1 - (1 - 2 * torch.arccos(1 - t) / math.pi))


def test_elbo_weight_is_ratio():
    s = get_schedule("linear")
    assert float(s.elbo_weight(0.25)) == pytest.approx(4.0)


def test_unknown_schedule():
    with pytest.raises(MaskgenError, match="unknown schedule"):
        get_schedule("sigmoid")
