"""Zero-cost proxies on NAS-Bench-201 networks built in trials.nas201."""
from __future__ import annotations

import math

import pytest
import torch

from trials.nas201 import build_nb201, parse_cell
from trials.zero_cost import PROXIES, digits_batch, gradsign, naswot, score_nb201, synflow

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EMPTY = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
POOLS = "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"


def test_nb201_network_shapes_and_parameter_counts():
    x, _ = digits_batch(8, 0)
    assert x.shape == (8, 3, 32, 32)
    for arch in (BEST, EMPTY, POOLS):
        out = build_nb201(arch, C=8, cells_per_stage=1, seed=0)(x)
        assert out.shape == (8, 10) and torch.isfinite(out).all()
    n = lambda a: sum(p.numel() for p in build_nb201(a, C=8, cells_per_stage=1).parameters())  # noqa: E731
    assert n(BEST) > n(POOLS) == n(EMPTY)
    # Equal seeds give equal weights without moving the global torch stream.
    state = torch.random.get_rng_state()
    a, b = build_nb201(BEST, C=8, cells_per_stage=1, seed=3), build_nb201(BEST, C=8, cells_per_stage=1, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_parse_cell_rejects_bad_strings():
    assert parse_cell(BEST)[2] == [("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_3x3", 2)]
    with pytest.raises(ValueError, match="bad edge"):
        parse_cell("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ValueError, match="1, 2 and 3 inputs"):
        parse_cell("|none~0|+|none~0|")


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_proxies_are_finite_deterministic_and_leave_the_model_alone(proxy):
    model = build_nb201(BEST, C=8, cells_per_stage=1, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = digits_batch(16, 0)
    s1 = PROXIES[proxy](model, x, y)
    s2 = PROXIES[proxy](model, x, y)
    assert math.isfinite(s1) and s1 == pytest.approx(s2, rel=1e-6)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_proxies_prefer_convolutions_to_an_empty_or_parameter_free_cell():
    x, y = digits_batch(16, 0)
    for arch in (EMPTY, POOLS):
        assert synflow(build_nb201(BEST, C=8, cells_per_stage=1, seed=0), x) > synflow(
            build_nb201(arch, C=8, cells_per_stage=1, seed=0), x)
    # A cell that outputs zeros makes every example's activation code the same: a singular kernel.
    assert naswot(build_nb201(BEST, C=8, cells_per_stage=1, seed=0), x) > naswot(
        build_nb201(EMPTY, C=8, cells_per_stage=1, seed=0), x)


def test_gradsign_counts_sign_agreement():
    # One linear layer, two examples with opposite inputs and the same label: per-sample gradients
    # of the weight have opposite signs everywhere, so nothing agrees except the bias-free parts.
    lin = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -0.25], [0.1, 0.3]]))
    x = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    assert gradsign(lin, x, torch.tensor([0, 0])) == 0.0
    assert gradsign(lin, x[:1].repeat(2, 1), torch.tensor([0, 0])) == 2 * 4


def test_score_nb201_and_unknown_proxy():
    assert score_nb201(BEST, "synflow", seed=0) == score_nb201(BEST, "synflow", seed=0)
    with pytest.raises(ValueError, match="unknown zero-cost proxy 'snip'"):
        score_nb201(BEST, "snip")
