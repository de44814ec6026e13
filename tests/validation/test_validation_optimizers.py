"""Each batched optimizer step equals torch.optim on a single un-batched parameter (docs/math.md §11)."""

import numpy as np
import pytest
import torch

from flowsim.validation.optimizers import make_optimizer, torch_optimizer

CASES = [
    ("gd", {}),
    ("gd", {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("gd", {"momentum": 0.5, "nesterov": True}),
    ("adam", {}),
    ("adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True}),
    ("adagrad", {}),
    ("adagrad", {"lr_decay": 0.05, "initial_accumulator_value": 0.1, "weight_decay": 0.01}),
    ("adamax", {}),
    ("adamax", {"beta1": 0.7, "beta2": 0.95, "eps": 1e-4}),
    ("rmsprop", {}),
    ("rmsprop", {"alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.01}),
]


def _loss(params, target):
    """A depth-2 factorization loss with non-trivial, changing gradients."""
    W = params[1] @ params[0]
    return ((W - target) ** 2).sum() + 0.1 * (params[0] ** 4).sum()


@pytest.mark.parametrize("name,hyper", CASES)
def test_step_matches_torch_optim(name, hyper):
    rng = np.random.default_rng(0)
    p0 = [rng.standard_normal((3, 4)), rng.standard_normal((5, 3))]
    target = torch.as_tensor(rng.standard_normal((5, 4)))
    lr = 0.01
    ref = [torch.tensor(p, requires_grad=True) for p in p0]
    ref_opt = torch_optimizer(name, ref, lr, **hyper)
    mine = [torch.tensor(p[None]) for p in p0]  # batch of one
    opt = make_optimizer(name, mine, lr, **hyper)
    for _ in range(25):
        ref_opt.zero_grad()
        _loss(ref, target).backward()
        grads_ref = [r.grad.detach().clone() for r in ref]
        ref_opt.step()
        opt.step([g[None] for g in grads_ref])  # the same gradient sequence
        for r, m in zip(ref, mine):
            np.testing.assert_allclose(m[0].numpy(), r.detach().numpy(), rtol=1e-12, atol=1e-13)
    # after 25 steps the parameters moved: the comparison was not vacuous
    assert not np.allclose(mine[0][0].numpy(), p0[0])


@pytest.mark.parametrize("name", ["gd", "adam", "adagrad", "adamax", "rmsprop"])
def test_per_run_learning_rates_equal_separate_runs(name):
    rng = np.random.default_rng(1)
    lrs = [0.1, 0.01, 0.003]
    p = rng.standard_normal((3, 4, 4))
    grads = [rng.standard_normal((3, 4, 4)) for _ in range(6)]
    batched = [torch.tensor(p)]
    opt = make_optimizer(name, batched, lrs)
    for g in grads:
        opt.step([torch.tensor(g)])
    for b, lr in enumerate(lrs):
        single = [torch.tensor(p[b : b + 1])]
        o = make_optimizer(name, single, lr)
        for g in grads:
            o.step([torch.tensor(g[b : b + 1])])
        np.testing.assert_array_equal(batched[0][b].numpy(), single[0][0].numpy())


def test_bad_hyper_parameters():
    from flowsim.errors import BadInputError

    p = [torch.zeros(1, 2, 2)]
    with pytest.raises(BadInputError):
        make_optimizer("adam", p, 0.01, beta1=1.0)
    with pytest.raises(BadInputError):
        make_optimizer("gd", p, -0.1)
    with pytest.raises(BadInputError):
        make_optimizer("adam", p, 0.01, alpha=0.9)
    with pytest.raises(BadInputError):
        make_optimizer("sgdx", p, 0.01)
