"""The batched SVD of the discrete runs' penalty gradient: when LAPACK's divide-and-conquer fails to converge
on one element, the batch falls back element by element to the QR-iteration driver, and an element that
cannot be factorized gets NaN factors (its run stops as diverged) instead of stopping the whole batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowsim.validation import batched
from flowsim.validation.batched import batched_svd


def _failing_svd(*args, **kwargs):
    raise torch.linalg.LinAlgError("linalg.svd: (Batch element 1): The algorithm failed to converge")


def test_fallback_factorizes_every_good_element(monkeypatch):
    rng = np.random.default_rng(0)
    W = torch.as_tensor(rng.standard_normal((3, 6, 5)))
    ref = torch.linalg.svd(W, full_matrices=False)
    monkeypatch.setattr(torch.linalg, "svd", _failing_svd)
    U, s, Vh = batched_svd(W)
    assert torch.allclose(s, ref[1], atol=1e-12)
    assert torch.allclose(U @ torch.diag_embed(s) @ Vh, W, atol=1e-12)


def test_an_element_that_cannot_be_factorized_gets_nan(monkeypatch):
    import scipy.linalg

    rng = np.random.default_rng(1)
    W = torch.as_tensor(rng.standard_normal((2, 4, 4)))
    real = scipy.linalg.svd
    calls = []

    def flaky(a, **kw):
        calls.append(kw.get("lapack_driver"))
        if len(calls) == 2:
            raise np.linalg.LinAlgError("SVD did not converge")
        return real(a, **kw)

    monkeypatch.setattr(torch.linalg, "svd", _failing_svd)
    monkeypatch.setattr(scipy.linalg, "svd", flaky)
    U, s, Vh = batched_svd(W)
    assert calls == ["gesvd", "gesvd"]
    assert torch.all(torch.isfinite(s[0])) and torch.all(torch.isnan(s[1]))
    assert torch.all(torch.isnan(U[1])) and torch.all(torch.isnan(Vh[1]))


def test_a_failed_factorization_marks_only_its_run(monkeypatch):
    """Through the penalized loss of a batch of two runs: the run whose SVD failed has a NaN objective (the
    stopping rule's "diverged"), the other run's objective and gradient are unchanged."""
    from flowsim.penalties import make_penalty
    from flowsim.problems import synthetic_problem

    probs = [synthetic_problem(6, 6, 2, 20, s) for s in (0, 1)]
    bp = batched.BatchedProblems.stack(probs, make_penalty("ratio"), [1e-2, 1e-2], torch.device("cpu"),
                                       torch.float64)
    W = torch.as_tensor(np.stack([p.W_star + 0.1 for p in probs]))
    loss_ref, G_ref = bp.loss_and_grad(W)
    import scipy.linalg

    real = scipy.linalg.svd
    count = {"n": 0}

    def second_fails(a, **kw):
        count["n"] += 1
        if count["n"] == 2:
            raise np.linalg.LinAlgError("SVD did not converge")
        return real(a, **kw)

    monkeypatch.setattr(torch.linalg, "svd", _failing_svd)
    monkeypatch.setattr(scipy.linalg, "svd", second_fails)
    loss, G = bp.loss_and_grad(W)
    assert float(loss[0]) == pytest.approx(float(loss_ref[0]), rel=1e-12)
    assert torch.allclose(G[0], G_ref[0], atol=1e-12)
    assert not np.isfinite(float(loss[1]))
