"""``flowsim figures``: one small figure end to end, the run cache, and bad input."""

import json
from dataclasses import replace

import numpy as np
import pytest

from flowsim import EndProductFlow, init_factors, simulate, synthetic_problem
from flowsim.cli import main
from flowsim.errors import BadInputError
from flowsim.figures.gallery import FIGURES, PREVIEW, draw_gf_depths, jobs_gf_depths, select, sim_job
from flowsim.figures.jobs import JOB_JSON, Job, ensure_jobs, is_done
from flowsim.trajectory import load_run

TINY = replace(
    PREVIEW, name="tiny",
    problem={"m": 8, "n": 8, "rank": 2, "observed": 40, "seed": 0, "reduction": "mean", "scale": 1.0},
    depths=(1, 2, 3), gf_t_end=500.0, gf_n_save=30,
)


def _png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.slow
def test_gf_depths_figure_end_to_end_and_cache(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    jobs = jobs_gf_depths(TINY)
    rep = ensure_jobs(jobs, data, workers=1)
    assert len(rep.computed) == 3 and not rep.failed and not rep.reused
    dirs = {j.label: j.folder(data) for j in jobs}
    for j in jobs:
        traj, info = load_run(dirs[j.label])
        assert info["status"] == "ok" and info["params"]["depth"] == j.spec["depth"]
        assert traj.t[0] == 0 and traj.t[-1] == pytest.approx(TINY.gf_t_end)
        assert np.linalg.matrix_rank(traj.W_star) == 2
    # the cached run is exactly the direct API call with the same inputs (same seed, same numbers)
    j = jobs[1]
    problem = synthetic_problem(8, 8, 2, 40, seed=0)
    factors = init_factors("balanced-gaussian", problem.shape, 2, TINY.init_scale, seed=0)
    direct = simulate(EndProductFlow(problem, 2), factors, TINY.gf_t_end, n_save=TINY.gf_n_save,
                      t_min=TINY.gf_t_end * 1e-5)
    cached, _ = load_run(dirs[j.label])
    np.testing.assert_array_equal(cached.sigma, direct.sigma)
    np.testing.assert_array_equal(cached.t, direct.t)
    # a deep network ends lower in effective rank than depth 1, which never leaves the observed entries
    er = {j.spec["depth"]: load_run(dirs[j.label])[0].erank[-1] for j in jobs}
    te = {j.spec["depth"]: load_run(dirs[j.label])[0].test_error[-1] for j in jobs}
    assert er[3] < er[1] and te[3] < te[1]
    assert te[1] == pytest.approx(1.0, abs=0.02)  # depth 1: unobserved entries stay at their O(1e-3) start
    paths = draw_gf_depths(dirs, TINY, out, pdf=True)
    assert [p.name for p in paths] == ["fig1_gf_depths.png", "fig1_gf_depths.pdf"]
    w, h = _png_size(paths[0])
    assert w >= 1500 and h >= 800
    assert paths[1].read_bytes().startswith(b"%PDF")
    # second call: everything reused, nothing recomputed
    rep2 = ensure_jobs(jobs, data, workers=1)
    assert not rep2.computed and len(rep2.reused) == 3


def test_changed_spec_is_recomputed_and_marker_is_written_last(tmp_path):
    a = sim_job(TINY, "gf", 2, 0.0)
    b = sim_job(replace(TINY, gf_t_end=400.0), "gf", 2, 0.0)
    assert a.folder(tmp_path) != b.folder(tmp_path)
    ensure_jobs([a], tmp_path, workers=1)
    assert is_done(a, tmp_path) and not is_done(b, tmp_path)
    marker = json.loads((a.folder(tmp_path) / JOB_JSON).read_text())
    assert marker["spec"]["t_end"] == TINY.gf_t_end
    # a folder without the marker (an interrupted computation) is not taken as done
    (a.folder(tmp_path) / JOB_JSON).unlink()
    assert not is_done(a, tmp_path)
    assert not list(tmp_path.glob("simulate/.*tmp*"))


def test_failed_job_is_reported_not_raised(tmp_path):
    too_many_observed = {"m": 4, "n": 4, "rank": 1, "observed": 100}
    bad = Job("bad", {"kind": "simulate", "problem": too_many_observed, "flow": "gf", "depth": 2,
                      "penalty": "none", "lam": 0.0, "init": "balanced-gaussian", "init_scale": 1e-3,
                      "t_end": 1.0, "n_save": 3})
    rep = ensure_jobs([bad], tmp_path, workers=1)
    assert list(rep.failed) == [str(bad.folder(tmp_path))]
    assert not bad.folder(tmp_path).exists()


def test_select_by_name_or_number():
    assert [f.name for f in select(["razin", "1"])] == ["gf-depths", "razin"]
    assert len(select(None)) == len(FIGURES) == 6
    with pytest.raises(BadInputError):
        select(["nope"])


def test_cli_bad_input_leaves_nothing(tmp_path, capsys):
    target = tmp_path / "figs"
    assert main(["figures", "--only", "nope", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown figure" in err
    assert not target.exists()
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["figures", "--out", str(afile), "--only", "checker"]) == 2


@pytest.mark.slow
def test_cli_builds_the_checker_figure(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    rc = main(["figures", "--preview", "--only", "checker", "--out", str(out), "--data", str(data),
               "--workers", "1", "--quiet"])
    assert rc == 0
    assert (out / "fig6_checker.png").is_file()
    (check_json,) = data.glob("check/*/check.json")
    records = json.loads(check_json.read_text())
    assert {r["verdict"] for r in records} <= {"holds", "approximate", "fails"}
    assert any(r["id"] == "Z22-EQ7" and r["verdict"] == "fails" for r in records)


@pytest.mark.slow
def test_jobs_run_on_the_sweep_pool_razin_through_its_run_function(tmp_path):
    """``workers`` ≥ 2: the jobs run in the sweep's worker processes; a razin job is the run of
    ``flowsim.runs.razin.run_razin`` (the same run.json and trajectory as that call), cached afterwards."""
    from flowsim.runs.razin import RazinSpec, run_razin

    razin = Job("razin-d2", {"kind": "razin", "depth": 2, "t_end": 200.0, "n_save": 20, "family": False})
    sim = sim_job(TINY, "gf", 2, 0.0)
    rep = ensure_jobs([razin, sim], tmp_path, workers=2)
    assert not rep.failed and len(rep.computed) == 2
    direct = tmp_path / "direct"
    result = run_razin(RazinSpec(depth=2, t_end=200.0, n_save=20, out=str(direct), quiet=True))
    assert (result.status, result.exit_code) == ("ok", 0)
    cached, info = load_run(razin.folder(tmp_path))
    ref, ref_info = load_run(direct)
    np.testing.assert_array_equal(cached.t, ref.t)
    np.testing.assert_array_equal(cached.sigma, ref.sigma)
    assert info["params"] | {"out": None} == ref_info["params"] | {"out": None}
    assert info["verdicts"] == ref_info["verdicts"]
    rep2 = ensure_jobs([razin, sim], tmp_path, workers=2)
    assert not rep2.computed and len(rep2.reused) == 2


def test_depth1_adam_row_is_the_adam_ode_beside_discrete_adam(tmp_path):
    """Figure 3's Adam pair: the BB21 ODE at the paper's η and discrete Adam at the same η, from the same
    init. The cached discrete run is exactly the direct ``train`` call; the ODE run reaches its horizon and
    stays close to the discrete run it models (8×8, λ = 1e-2, t = kη ≤ 1)."""
    from flowsim.figures.gallery import adam_train_job, jobs_depth1_ratio
    from flowsim.penalties import make_penalty
    from flowsim.validation.train import train

    s = replace(TINY, depth1_adam_t_end=1.0, depth1_lams=(1e-2,))
    ode, disc = sim_job(s, "adam-ode", 1, 1e-2), adam_train_job(s, 1, 1e-2)
    assert {j.label for j in jobs_depth1_ratio(s)} >= {ode.label, disc.label}
    assert ode.spec["options"]["lr"] == disc.spec["lr"] == s.adam_lr == 0.01
    assert disc.spec["iters"] == 100
    rep = ensure_jobs([ode, disc], tmp_path, workers=1)
    assert not rep.failed
    t_ode, info = load_run(ode.folder(tmp_path))
    t_disc, _ = load_run(disc.folder(tmp_path))
    assert info["status"] == "ok" and t_ode.t[-1] == pytest.approx(1.0)
    problem = synthetic_problem(8, 8, 2, 40, seed=0)
    factors = init_factors("balanced-gaussian", problem.shape, 1, s.init_scale, seed=0)
    direct = train(problem, factors, optimizer="adam", lr=0.01, iters=100, penalty=make_penalty("ratio"),
                   lam=1e-2, n_record=s.n_save_budgeted, device="cpu", progress=False)
    np.testing.assert_array_equal(t_disc.sigma, direct.sigma)
    assert t_disc.t[-1] == pytest.approx(1.0)
    # the ODE against discrete Adam at t = 1 (measured: σ₁ 1.9e-3 apart relative, erank 0.04)
    s_ode, s_disc = t_ode.sigma[-1], t_disc.sigma[-1]
    assert abs(s_ode[0] - s_disc[0]) <= 0.05 * s_disc[0]
    assert abs(t_ode.erank[-1] - t_disc.erank[-1]) <= 0.3
