"""The claims registry, user claims (``--module``), the report and the ``flowsim check`` command; the sympy
derivations checked numerically at random points."""

import json
import textwrap

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from flowsim.cli import main
from flowsim.penalties import make_penalty
from flowsim.theory import derivations as d
from flowsim.theory import exact
from flowsim.theory.registry import (
    CLAIM_ALIASES,
    REGISTRY,
    CheckConfig,
    Evidence,
    claim,
    evaluate,
    load_builtin_claims,
    resolve_claim_id,
    verdict_for,
)
from flowsim.theory.report import markdown_from_records, records_json, table

USER_MODULE = textwrap.dedent('''
    import numpy as np
    from flowsim.theory.registry import formula_claim
    from flowsim.penalties import make_penalty

    @formula_claim("USER-RATIO-ORTH-{tag}", source="test note Eq. 1", statement="<grad R, W> = 0",
                   tolerance=1e-10, exact=lambda W: np.zeros(1), of="W", depths=(1, 2))
    def inner(W):
        return np.array([np.vdot(make_penalty("ratio").grad(W), W)])

    @formula_claim("USER-WRONG-{tag}", source="test note Eq. 2", statement="W_2 W_1 = 2 W",
                   tolerance=1e-10, exact=lambda f: 2 * f[1] @ f[0], of="factors", depths=(2,),
                   trajectories=False)
    def wrong(factors):
        return factors[1] @ factors[0]
''')


def _write_module(tmp_path, tag):
    path = tmp_path / f"user_claims_{tag.lower()}.py"
    path.write_text(USER_MODULE.replace("{tag}", tag))
    return path


def test_verdict_thresholds():
    assert verdict_for(1e-9, 1e-8, 0.1) == "holds"
    assert verdict_for(1e-3, 1e-8, 0.1) == "approximate"
    assert verdict_for(0.5, 1e-8, 0.1) == "fails"
    assert verdict_for(float("nan"), 1e-8, 0.1) == "fails"


def test_evaluate_reports_a_crashing_test_as_fails():
    @claim("TEST-CRASH", "nowhere", "raises", 1e-3)
    def crash(config):
        raise RuntimeError("boom")

    rec = evaluate(REGISTRY.pop("TEST-CRASH"), CheckConfig(quick=True))
    assert rec.verdict == "error" and rec.errored and "boom" in rec.details["error"]


def test_approximate_record_carries_relative_error():
    @claim("TEST-APPROX", "nowhere", "approximately", 1e-6, approx_tolerance=0.1)
    def approx(config):
        return Evidence(0.01, {})

    rec = evaluate(REGISTRY.pop("TEST-APPROX"), CheckConfig())
    assert rec.verdict == "approximate" and rec.details["relative_error"] == 0.01
    js = rec.to_json()
    assert set(js) == {"id", "source", "statement", "verdict", "residual", "tolerance", "details"}


def test_user_module_runs_beside_builtins_with_json(tmp_path, capsys):
    path = _write_module(tmp_path, "A")
    out = tmp_path / "check.json"
    code = main(["check", "--quick", "--module", str(path), "--claim", "USER-RATIO-ORTH-A",
                 "--claim", "USER-WRONG-A", "--claim", "Z22-EQ6-N1", "--json", str(out), "--quiet"])
    assert code == 0
    recs = {r["id"]: r for r in json.loads(out.read_text())}
    assert recs["USER-RATIO-ORTH-A"]["verdict"] == "holds"
    assert recs["USER-RATIO-ORTH-A"]["details"]["group"] == "user:user_claims_a"
    assert recs["USER-RATIO-ORTH-A"]["details"]["instances"] > 10  # random + trajectory instances
    wrong = recs["USER-WRONG-A"]
    assert wrong["verdict"] == "fails" and wrong["residual"] == pytest.approx(0.5)
    assert "counterexample" in wrong["details"]
    assert recs["Z22-EQ6-N1"]["verdict"] == "holds"
    assert "USER-WRONG-A" in capsys.readouterr().out


def test_a_user_module_loaded_earlier_is_not_part_of_a_later_check(tmp_path, capsys):
    """In one process (the gallery's in-process jobs, a notebook), a module loaded by an earlier
    ``check --module`` stays imported but belongs only to the checks that name it."""
    from flowsim.theory.registry import load_builtin_claims

    path = _write_module(tmp_path, "LATER")
    assert main(["check", "--module", str(path), "--list"]) == 0
    assert "USER-WRONG-LATER" in capsys.readouterr().out
    assert main(["check", "--list"]) == 0
    assert "USER-WRONG-LATER" not in capsys.readouterr().out
    assert "USER-WRONG-LATER" not in load_builtin_claims()
    assert main(["check", "--module", str(path), "--list"]) == 0  # cached module: still selectable
    assert "USER-WRONG-LATER" in capsys.readouterr().out


def test_list_and_unknown_claim(tmp_path, capsys):
    assert main(["check", "--list"]) == 0
    listed = capsys.readouterr().out
    for cid in ("ACH18-EQ4", "Z22-EQ9", "GD-EULER", "BALANCEDNESS", "SYM-CLOSED-FORM"):
        assert cid in listed
    out = tmp_path / "x.json"
    assert main(["check", "--claim", "NOPE", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown claim id(s) NOPE" in err and "ACH18-EQ4" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_builtin_claim_ids_are_upper_case_and_old_spellings_still_select():
    registry = {cid: c for cid, c in load_builtin_claims().items() if c.group == "builtin"}
    assert len(registry) >= 25
    assert all(cid == cid.upper() for cid in registry), [cid for cid in registry if cid != cid.upper()]
    assert resolve_claim_id(registry, "rc20-c3") == "RC20-C3"
    assert resolve_claim_id(registry, "z22-eq7") == "Z22-EQ7"
    assert resolve_claim_id(registry, "SPEC-3.2-EXACT") == "Z22-EQ7-EXACT"
    assert all(new in registry for new in CLAIM_ALIASES.values())
    assert resolve_claim_id(registry, "rc20-c9") is None
    # two ids equal up to case: only the exact spelling selects
    twins = {"MY-A": registry["RC20-C1"], "my-a": registry["RC20-C2"]}
    assert resolve_claim_id(twins, "my-a") == "my-a" and resolve_claim_id(twins, "My-A") is None


@pytest.mark.slow
def test_old_claim_spelling_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["check", "--quick", "--claim", "sym-ratio-grad", "--json", str(out), "--quiet"]) == 0
    assert [r["id"] for r in json.loads(out.read_text())] == ["SYM-RATIO-GRAD"]


def test_bad_module_and_bad_json_path_exit_2(tmp_path, capsys):
    assert main(["check", "--module", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('nope')\n")
    assert main(["check", "--module", str(broken)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["check", "--claim", "Z22-EQ6-N1", "--json", str(tmp_path / "no" / "dir" / "x.json")]) == 2
    assert not (tmp_path / "no").exists()


def test_duplicate_user_claim_id_is_bad_input(tmp_path, capsys):
    dup = tmp_path / "dup.py"
    dup.write_text("from flowsim.theory.registry import claim, Evidence\n"
                   "@claim('ACH18-EQ4', 'x', 'y', 1.0)\ndef t(c):\n    return Evidence(0.0)\n")
    assert main(["check", "--module", str(dup), "--claim", "Z22-EQ6-N1"]) == 2
    assert "already registered" in capsys.readouterr().err


def test_user_claim_that_raises_exits_3(tmp_path, capsys):
    mod = tmp_path / "raising.py"
    mod.write_text("from flowsim.theory.registry import claim\n"
                   "@claim('USER-RAISES', 'x', 'y', 1.0)\ndef t(c):\n    raise ZeroDivisionError('zero')\n")
    assert main(["check", "--module", str(mod), "--claim", "USER-RAISES", "--quiet"]) == 3
    assert "zero" in capsys.readouterr().err


def test_report_table_and_markdown(tmp_path):
    @claim("TEST-MD", "Paper Eq. 1", "a | b", 1e-6, meaning="what | it means")
    def t(config):
        return Evidence(2.0, {"worst_instance": "x"})

    rec = evaluate(REGISTRY.pop("TEST-MD"), CheckConfig())
    md = markdown_from_records(records_json([rec]))
    assert "`TEST-MD`" in md and "**fails**" in md and "a \\| b" in md and "what \\| it means" in md
    assert "1 claims: 0 hold, 0 approximate, 1 fail" in table([rec])


# ---- sympy derivations, checked numerically at random points ---------------------------------------------

def test_ratio_gradient_derivations_numerically():
    rng = np.random.default_rng(0)
    sym = d.ratio_gradient_derivation(4)
    assert all(r == 0 for r in sym.residuals)
    import sympy as sp

    f = sp.lambdify(sym.sigmas, list(sym.derived), "numpy")
    s = np.sort(rng.uniform(0.1, 3.0, 4))[::-1]
    assert np.allclose(f(*s), exact.ratio_gradient_projection(s), rtol=1e-12)
    grad2, _ = d.ratio_gradient_2x2()
    for _ in range(5):
        W = rng.standard_normal((2, 2))
        Wt = torch.tensor(W, requires_grad=True)
        (torch.linalg.matrix_norm(Wt, "nuc") / torch.linalg.matrix_norm(Wt)).backward()
        assert np.allclose(grad2(W), Wt.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_corrected_eq7_numerically():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((4, 4))
    G = rng.standard_normal((4, 4))
    U, s, Vt = np.linalg.svd(W)
    g = np.diag(U.T @ G @ Vt.T)
    for depth, lam in [(1, 0.1), (3, 0.5)]:
        assert np.allclose(d.corrected_eq7_numeric(s, g, depth, lam),
                           exact.penalized_singular_value_velocity(W, G, depth, lam), rtol=1e-11)
    der = d.corrected_eq7(3, 1)
    assert der.corrected_minus_exact_closed_form == 0
    assert not d.is_zero(der.printed_minus_corrected)
    assert not d.is_zero(der.eq8_minus_corrected)


@pytest.mark.slow
def test_closed_forms_numerically():
    c = d.closed_form_n2()
    assert c.ode_residual_n2 == 0 and c.initial_residual_n2 == 0 and c.ode_residual_n4 == 0
    s, s0 = 1.7, 0.03
    sol = solve_ivp(lambda t, x: 2 * x * (s - x), (0, 4), [s0], rtol=1e-12, atol=1e-14,
                    t_eval=[1.0, 2.0, 4.0])
    assert np.allclose([c.sigma_n2_function(t, s, s0) for t in sol.t], sol.y[0], rtol=1e-9)


def test_schatten_ratio_penalty_unaffected():
    # the derivations only cover the ratio penalty; the schatten spelling still parses (smoke)
    assert make_penalty("schatten:1/2:2/3").spec() == "schatten:0.5:0.666667"
