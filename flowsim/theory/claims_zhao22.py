"""Zhao22's printed equations against their exact counterparts (docs/math.md §5, §8.1, §8.2;
docs/contract.md §4).

Each test evaluates the printed formula (:mod:`flowsim.theory.printed`) and the exact quantity
(:mod:`flowsim.theory.exact`) on the shared instances (:mod:`flowsim.theory.instances`: random balanced
factors of several shapes, depths 1..5, λ values, and points along integrated trajectories) and reports the
largest relative error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowsim.errors import BadInputError

from . import exact, printed
from .instances import instances
from .registry import CheckConfig, Evidence, claim, compare_on_instances, relative_error

CONVENTIONS = ("row-major", "col-major")


def _sv_truth(inst, lam: float | None = None) -> np.ndarray:
    """σ̇ of the exact penalized gradient flow at inst, by central differences along Ẇ = −P_W(∇ℓ + λ∇R)."""
    lam = inst.lam if lam is None else lam
    Wdot = exact.penalized_end_product_velocity(inst.W, inst.loss_grad, inst.depth, lam)
    return exact.singular_value_derivative_fd(inst.W, Wdot)


@claim("Z22-EQ3", "Zhao22 Eq. 3", "σ̇_r = −N σ_r^{2−2/N} u_rᵀ∇ℓ v_r along the (unpenalized) end-product flow",
       1e-6, meaning="holds: flowsim's singular-value dynamics without penalty are Eq. 3 (ACHL19 Thm. 3)")
def eq3(config: CheckConfig) -> Evidence:
    """Eq. 3 against finite differences of σ(W) along the exact velocity Ẇ = −P_W ∇ℓ (λ = 0)."""
    insts = instances(config, lams=(0.0,))
    ev = compare_on_instances(lambda i: printed.eq3_singular_value_velocity(i.W, i.loss_grad, i.depth),
                              lambda i: _sv_truth(i, 0.0), insts)
    ev.details["reference"] = "central differences of σ(W ± hẆ), h = 1e-5‖W‖/‖Ẇ‖"
    return ev


@claim("Z22-EQ7-EXACT", "Zhao22 Eq. 7 (corrected)",
       "σ̇_r = −Nσ_r^{2−2/N}(u_rᵀ∇ℓv_r + λ(1/‖W‖_F − ‖W‖_*σ_r/‖W‖_F³)) along the penalized flow", 1e-6,
       meaning="holds: this is the singular-value equation flowsim uses for the ratio penalty")
def exact_sv(config: CheckConfig) -> Evidence:
    """The exact penalized singular-value velocity against finite differences of σ along the exact flow."""
    insts = [i for i in instances(config) if i.lam > 0]
    ev = compare_on_instances(
        lambda i: exact.penalized_singular_value_velocity(i.W, i.loss_grad, i.depth, i.lam), _sv_truth, insts)
    ev.details["reference"] = "central differences of σ along Ẇ = −P_W(∇ℓ + λ∇R)"
    return ev


@claim("Z22-EQ7", "Zhao22 Eq. 7", "Theorem 2 as printed gives σ̇_r of the ratio-penalized gradient flow",
1e-6,
       meaning="fails: flowsim integrates the exact equation (Z22-EQ7-EXACT); Eq. 7 has the wrong "
               "penalty term (σ_r^{(3N−2)/2}(1 − ‖W‖_*/‖W‖_F)/‖W‖_F² instead of "
               "σ_r^{2−2/N}(1/‖W‖_F − ‖W‖_*σ_r/‖W‖_F³))")
def eq7(config: CheckConfig) -> Evidence:
    """Printed Eq. 7 against finite differences of σ along the exact penalized flow (λ > 0 instances)."""
    insts = [i for i in instances(config) if i.lam > 0]
    ev = compare_on_instances(
        lambda i: printed.eq7_singular_value_velocity(i.W, i.loss_grad, i.depth, i.lam), _sv_truth, insts,
        group_by=lambda i: f"λ={i.lam:g}")
    return ev


@claim("Z22-EQ7-EQ8", "Zhao22 Eq. 7 vs Eq. 8", "Eq. 7 is the singular-value projection u_rᵀẆv_r of Eq. 8",
       1e-8, meaning="fails: the two printed halves of Theorem 2 are not consistent with each other")
def eq7_vs_eq8(config: CheckConfig) -> Evidence:
    """Printed Eq. 7 against u_rᵀ(Eq. 8 velocity)v_r."""
    insts = [i for i in instances(config) if i.lam > 0]
    return compare_on_instances(
        lambda i: printed.eq7_singular_value_velocity(i.W, i.loss_grad, i.depth, i.lam),
        lambda i: exact.projected_singular_value_velocity(i.W, printed.eq8_velocity(i.W, i.loss_grad, i.depth,
                                                                                      i.lam)),
        insts, group_by=lambda i: f"λ={i.lam:g}")


@claim("Z22-EQ8", "Zhao22 Eq. 8",
       "Theorem 2 as printed is the end-product velocity of layer-wise GF on ℓ + λ‖W‖_*/‖W‖_F (balanced)",
       1e-8,
       meaning="fails off the unit sphere ‖W‖_F = 1: the printed penalty term has 1/‖W‖_F² where ∇R has "
               "1/‖W‖_F; `--penalty ratio` always uses the exact ∇R")
def eq8(config: CheckConfig) -> Evidence:
    """Printed Eq. 8 against the end-product velocity of layer-wise gradient flow from balanced factors."""
    insts = [i for i in instances(config) if i.lam > 0]
    ev = compare_on_instances(
        lambda i: printed.eq8_velocity(i.W, i.loss_grad, i.depth, i.lam),
        lambda i: exact.gradient_flow_end_product_velocity(i.factors, i.G), insts,
        group_by=lambda i: f"λ={i.lam:g}")
    term = max(relative_error(printed.printed_penalty_term(i.W), exact.ratio_gradient(i.W)) for i in insts)
    unit = [i.W / np.linalg.norm(i.W) for i in insts[:5]]
    ev.details["penalty_term_max_relative_error"] = term
    ev.details["penalty_term_error_on_unit_sphere"] = max(
        relative_error(printed.printed_penalty_term(W), exact.ratio_gradient(W)) for W in unit)
    ev.details["printed_term_inner_product_with_W"] = "‖W‖_*(1/‖W‖_F² − 1/‖W‖_F) ≠ 0 (∇R ⟂ W exactly)"
    return ev


def _eq6_pair(convention: str):
    def formula(i):
        return printed.theorem1_velocity(i.W, i.loss_grad, i.layer_loss_grads, i.depth, convention)

    def truth(i):
        return exact.variance_adapted_velocity(i.factors, i.loss_grad)

    return formula, truth


def _defined(insts, fn) -> tuple[list, int]:
    ok, undefined = [], 0
    for i in insts:
        try:
            fn(i)
        except BadInputError:
            undefined += 1
            continue
        ok.append(i)
    return ok, undefined


def _per_convention(config: CheckConfig, depths: tuple[int, ...], main: str, pair_factory) -> Evidence:
    insts = instances(config, depths, lams=(0.0,)) if pair_factory is _eq6_pair else [
        i for i in instances(config, depths) if i.lam > 0]
    results: dict[str, Any] = {}
    main_ev: Evidence | None = None
    for conv in CONVENTIONS:
        formula, truth = pair_factory(conv)
        usable, undefined = _defined(insts, formula)
        ev = compare_on_instances(formula, truth, usable)
        results[conv] = {"residual": ev.residual, "undefined_instances": undefined,
                         "by_depth": ev.details["max_relative_error_by_group"]}
        if conv == main:
            main_ev = ev
            main_ev.details["undefined_instances"] = undefined
    assert main_ev is not None
    main_ev.details["convention"] = main
    main_ev.details["conventions"] = results
    main_ev.details["reference"] = "docs/math.md §8.2: Σ_j W_{N:j+1}(−S_j ⊙ ∇_{W_j})W_{j−1:1}, layer-wise"
    return main_ev


@claim("Z22-EQ6-N1", "Zhao22 Eq. 6 (N = 1)",
       "N = 1: Theorem 1 equals the exact variance-adapted flow −S_1 ⊙ ∇ℓ (either vec convention)", 1e-12,
       meaning="holds: for a single layer `adam-printed` and `adam-layer` are the same dynamics")
def eq6_n1(config: CheckConfig) -> Evidence:
    """Eq. 6 at N = 1, both conventions, square and non-square, against docs/math.md §8.2."""
    ev = _per_convention(config, (1,), "row-major", _eq6_pair)
    ev.residual = max(ev.residual, ev.details["conventions"]["col-major"]["residual"])
    return ev


def _eq6_claim(depth: int) -> None:
    @claim(f"Z22-EQ6-N{depth}", f"Zhao22 Eq. 6 (N = {depth})",
           f"N = {depth}: Theorem 1 (row-major vec) equals the end-product velocity of the layer-wise "
           "variance-adapted flow (docs/math.md §8.2) at balanced factors", 1e-8,
           meaning="fails: `adam-printed` is not the end product of a layer-wise Adam-type flow; use "
                   "`adam-layer` (exact, docs/math.md §8.2) or `adam-ode` to model Adam; details give the "
                   "column-major reading; non-square W is undefined at N ≥ 2")
    def test(config: CheckConfig) -> Evidence:
        return _per_convention(config, (depth,), "row-major", _eq6_pair)

    test.__doc__ = f"Eq. 6 at N = {depth} against docs/math.md §8.2, both vec conventions."


for _n in (2, 3, 4, 5):
    _eq6_claim(_n)


def _unit_scaling_pair(convention: str):
    def formula(i):
        return printed.theorem1_velocity(i.W, i.loss_grad, [np.ones_like(F) for F in i.factors], i.depth,
                                         convention)

    return formula, lambda i: printed.eq4_velocity(i.W, i.loss_grad, i.depth)


def _reduces_claim(convention: str, verdict_hint: str) -> None:
    @claim(f"Z22-EQ6-G1-{'ROW' if convention == 'row-major' else 'COL'}", "Zhao22 Eq. 6 vs Eq. 4",
           f"with G_j = I, Theorem 1 under {convention} vec reduces to Eq. 4", 1e-10, meaning=verdict_hint)
    def test(config: CheckConfig) -> Evidence:
        insts = [i for i in instances(config, lams=(0.0,)) if i.square]
        formula, truth = _unit_scaling_pair(convention)
        ev = compare_on_instances(formula, truth, insts)
        ev.details["convention"] = convention
        ev.details["note"] = "layer gradients of all ones give S_j = 1 (var = 0, ε = 1e-12); square W only"
        return ev

    test.__doc__ = f"Eq. 6 with unit S_j ({convention}) against Eq. 4."


_reduces_claim("row-major",
               "holds: flowsim evaluates Eq. 6 in row-major vec, the reading consistent with Eq. 4")
_reduces_claim("col-major",
               "fails: under the column-major vec (docs/math.md §1) the printed Kronecker order reverses the "
               "powers of WWᵀ and WᵀW")


def _sv_eq5_pair(convention: str, pairing: str = "printed"):
    def formula(i):
        return printed.theorem1_singular_value_velocity(i.W, i.loss_grad, i.layer_loss_grads, i.depth,
                                                        convention, pairing=pairing)

    def truth(i):
        return exact.projected_singular_value_velocity(i.W, exact.variance_adapted_velocity(i.factors,
                                                                                            i.loss_grad))

    return formula, truth


def _eq5(config: CheckConfig, depths: tuple[int, ...]) -> Evidence:
    ev = _per_convention(config, depths, "row-major", _sv_eq5_pair)
    for conv in CONVENTIONS:
        formula, truth = _sv_eq5_pair(conv, "uv")
        usable, _ = _defined(instances(config, depths, lams=(0.0,)), formula)
        ev.details["conventions"][conv]["residual_with_u_v_pairing"] = compare_on_instances(
            formula, truth, usable).residual
    ev.details["pairing"] = "printed vec(v_i u_iᵀ); 'residual_with_u_v_pairing' uses vec(u_i v_iᵀ)"
    return ev


@claim("Z22-EQ5-N1", "Zhao22 Eq. 5 (N = 1)",
       "N = 1: σ̇_i = −vec(v_iu_iᵀ)ᵀP_{W,G}vec(∇ℓ) is σ̇_i of the exact variance-adapted flow", 1e-10,
       meaning="fails as printed: vec(v_iu_iᵀ) pairs Ẇ with v_iᵀẆu_i; with u_iv_iᵀ it holds (see details) — "
               "a typo-level error; flowsim's σ̇ is always u_iᵀẆv_i")
def eq5_n1(config: CheckConfig) -> Evidence:
    """Eq. 5 at N = 1 against u_iᵀẆv_i of docs/math.md §8.2."""
    return _eq5(config, (1,))


@claim("Z22-EQ5", "Zhao22 Eq. 5 (N = 2..5)",
       "N ≥ 2: σ̇_i = −vec(v_iu_iᵀ)ᵀP_{W,G}vec(∇ℓ) is σ̇_i of the exact variance-adapted flow", 1e-8,
       meaning="fails: the printed singular-value dynamics of Theorem 1 do not describe a layer-wise "
               "Adam-type flow; details give both pairings and conventions")
def eq5(config: CheckConfig) -> Evidence:
    """Eq. 5 at N = 2..5 against u_iᵀẆv_i of docs/math.md §8.2."""
    return _eq5(config, (2, 3, 4, 5))


def _eq9_pair(convention: str):
    def formula(i):
        return printed.theorem3_velocity(i.W, i.loss_grad, i.layer_grads, i.depth, i.lam, convention)

    def truth(i):
        return exact.variance_adapted_velocity(i.factors, i.G)

    return formula, truth


@claim("Z22-EQ9", "Zhao22 Eq. 9",
       "Theorem 3 (row-major) equals the end-product velocity of the layer-wise variance-adapted flow on "
       "ℓ + λ‖W‖_*/‖W‖_F (docs/math.md §8.2), N = 1..5", 1e-8,
       meaning="fails, even at N = 1 (printed penalty term); with S_j from ∇_{W_j}(ℓ + λR). `adam-printed` "
               "with a penalty integrates Eq. 9 literally")
def eq9(config: CheckConfig) -> Evidence:
    """Eq. 9 against docs/math.md §8.2 with G = ∇ℓ + λ∇R; details isolate the penalty-term error at N = 1."""
    ev = _per_convention(config, (1, 2, 3, 4, 5), "row-major", _eq9_pair)
    n1 = [i for i in instances(config, (1,)) if i.lam > 0]
    ev.details["N1_with_exact_penalty_gradient"] = max(
        relative_error(printed.theorem1_velocity(i.W, i.G, i.layer_grads, 1), exact.variance_adapted_velocity(
            i.factors, i.G)) for i in n1)
    ev.details["S_j"] = "from the layer gradients of ℓ + λR (exact R), what Adam's second moment sees"
    return ev
