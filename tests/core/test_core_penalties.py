"""docs/math.md §3: penalty values and gradients against torch autograd and central differences."""

import zlib

import numpy as np
import pytest
import torch

from flowsim import make_penalty
from flowsim.errors import BadInputError
from flowsim.flows.gradient import singular_value_projection
from flowsim.penalties import ratio_spectral_grad

SPECS = ["ratio", "nuclear", "schatten:1/2:2/3", "schatten:1/3:2/3", "schatten:1/3:1/2", "schatten:1:2"]


def _torch_value(spec: str, W: torch.Tensor) -> torch.Tensor:
    s = torch.linalg.svdvals(W)
    if spec == "ratio":
        return s.sum() / torch.sqrt((s**2).sum())
    if spec == "nuclear":
        return s.sum()
    _, p, q = spec.split(":")
    p = eval(p)  # noqa: S307 - test literals like 1/2
    q = eval(q)  # noqa: S307
    return (s**p).sum() ** (1 / p) / (s**q).sum() ** (1 / q)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", [(5, 5), (4, 6), (7, 3)])
def test_gradient_matches_autograd_and_central_differences(spec, shape):
    rng = np.random.default_rng(zlib.crc32(f"{spec}{shape}".encode()))
    W = rng.standard_normal(shape)
    pen = make_penalty(spec)
    Wt = torch.tensor(W, requires_grad=True)
    val = _torch_value(spec, Wt)
    val.backward()
    assert pen.value(W) == pytest.approx(val.item(), rel=1e-12)
    g = pen.grad(W)
    assert np.allclose(g, Wt.grad.numpy(), rtol=1e-9, atol=1e-11)
    # central differences along random directions
    h = 1e-6
    for _ in range(3):
        D = rng.standard_normal(shape)
        fd = (pen.value(W + h * D) - pen.value(W - h * D)) / (2 * h)
        assert fd == pytest.approx(np.sum(g * D), rel=1e-6, abs=1e-8)


def test_ratio_is_scale_invariant_and_orthogonal_to_W():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 4))
    pen = make_penalty("ratio")
    assert pen.value(3.7 * W) == pytest.approx(pen.value(W), rel=1e-13)
    assert abs(np.sum(pen.grad(W) * W)) <= 1e-13 * np.linalg.norm(W)
    # projection on u_i v_iᵀ: 1/‖W‖_F − ‖W‖_* σ_i/‖W‖_F³ (docs/math.md §3)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    proj = np.einsum("ij,ij->j", U, pen.grad(W) @ Vt.T)
    F, nuc = np.linalg.norm(W), s.sum()
    assert np.allclose(proj, 1 / F - nuc * s / F**3, rtol=1e-12)
    # large σ grow (negative gradient projection), small ones shrink
    assert proj[0] < 0 < proj[-1]


def test_nuclear_subgradient_is_minimum_norm_at_rank_deficient_W():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 2)) @ rng.standard_normal((2, 5))
    U, s, Vt = np.linalg.svd(W)
    g = make_penalty("nuclear").grad(W)
    assert np.allclose(g, U[:, :2] @ Vt[:2], atol=1e-12)


def test_schatten_floor_keeps_gradient_finite_at_singular_W():
    W = np.diag([2.0, 1.0, 0.0])
    g = make_penalty("schatten:1/2:2/3").grad(W)
    assert np.all(np.isfinite(g))


def test_none_penalty_is_zero():
    W = np.ones((3, 4))
    pen = make_penalty("none")
    assert pen.value(W) == 0 and not np.any(pen.grad(W))


@pytest.mark.parametrize("bad", ["ridge", "schatten:1", "schatten:0:1", "schatten:-1:2", "schatten:a:b"])
def test_bad_penalty_spellings(bad):
    with pytest.raises(BadInputError):
        make_penalty(bad)


@pytest.mark.parametrize("spec", SPECS)
def test_active_spectral_grad_is_the_gradient_at_full_rank(spec):
    s = np.array([2.0, 1.3, 0.4])
    pen = make_penalty(spec)
    assert np.allclose(pen.active_spectral_grad(s), pen.spectral_grad(s, (3, 3)), rtol=1e-13)


@pytest.mark.parametrize("spec, sticks, threshold", [
    ("none", False, 0.0), ("nuclear", True, 1.0), ("ratio", True, 1 / np.sqrt(5.0)),
    ("schatten:1:2", True, 1 / np.sqrt(5.0)), ("schatten:1:3", True, 1 / 9 ** (1 / 3)),
    ("schatten:1/2:2/3", True, np.inf), ("schatten:1/3:1/2", True, np.inf),
    ("schatten:2/3:1/2", False, 0.0), ("schatten:2:3", False, 0.0)])
def test_null_block_threshold_of_each_penalty(spec, sticks, threshold):
    """c(σ) at σ = (2, 1, 0): nuclear 1, ratio 1/‖σ‖₂, Schatten 1:q 1/‖σ‖_q, Schatten p < 1 < … +inf."""
    pen = make_penalty(spec)
    assert pen.sticks_at_zero is sticks
    assert pen.null_threshold(np.array([2.0, 1.0])) == pytest.approx(threshold, rel=1e-13)


def test_ratio_spectral_grad_supports_and_projection():
    """The one ratio gradient: support = all ones is the smooth part at the positive σ_i, all zeros the smooth
    part −‖W‖_*σ/‖W‖_F³ alone, and RatioPenalty.grad(W) projects back onto it (u_iᵀ∇R v_i = g_i)."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((5, 4))
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    fro, nuc = np.linalg.norm(s), s.sum()
    np.testing.assert_allclose(ratio_spectral_grad(s), 1 / fro - nuc * s / fro**3, rtol=1e-14)
    np.testing.assert_allclose(ratio_spectral_grad(s, np.zeros_like(s)), -nuc * s / fro**3, rtol=1e-14)
    g = singular_value_projection(make_penalty("ratio").grad(W), U, Vt)
    np.testing.assert_allclose(g, ratio_spectral_grad(s), rtol=1e-12)
    assert np.all(ratio_spectral_grad(np.zeros(3)) == 0.0)

