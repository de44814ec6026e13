"""Ratings data: loader formats and bad files, the seeded train/test split, the explicit test set of a
completion problem and the test RMSE over held-out ratings (Zhao22 Table 2 metric)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from flowsim.cli.common import add_problem_args, problem_from_args
from flowsim.errors import BadInputError
from flowsim.metrics import matrix_metrics, metrics_along
from flowsim.problems import CompletionProblem, synthetic_problem
from flowsim.ratings import (
    load_ratings,
    ratings_problem,
    split_ratings,
    top_block,
    write_synthetic_ratings,
)

UDATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t377\t4\t878887116\n"


def test_loads_movielens_u_data(tmp_path):
    path = tmp_path / "u.data"
    path.write_text(UDATA)
    d = load_ratings(path)
    assert d.shape == (3, 3) and len(d) == 4
    assert d.users == ("196", "186", "22") and d.items == ("242", "302", "377")
    np.testing.assert_array_equal(d.user, [0, 1, 2, 0])
    np.testing.assert_array_equal(d.item, [0, 1, 2, 2])
    np.testing.assert_array_equal(d.rating, [3, 3, 1, 4])


@pytest.mark.parametrize("text", [
    "user,item,rating\n196,242,3\n186,302,3.5\n22,377,1\n196,377,4\n",
    "196 242 3\n186 302 3.5\n22 377 1\n196 377 4\n",
    "userId\titemId\trating\n196\t242\t3\n186\t302\t3.5\n22\t377\t1\n196\t377\t4\n",
])
def test_loads_csv_tsv_and_whitespace_triplets(tmp_path, text):
    path = tmp_path / "r.txt"
    path.write_text(text)
    d = load_ratings(path)
    assert d.shape == (3, 3)
    np.testing.assert_array_equal(d.rating, [3, 3.5, 1, 4])


@pytest.mark.parametrize("text, needle", [
    ("", "has no rating"),
    ("user,item,rating\n", "header and no rating"),
    ("1\t2\n", "2 fields"),
    ("1\t2\t3\t0\n1\t3\tfive\t0\n", "not a number"),
    ("1\t2\tnan\t0\n", "not finite"),
    ("1\t2\t3\t0\n1\t2\t4\t0\n", "more than once"),
])
def test_bad_files_are_one_line_bad_input(tmp_path, text, needle):
    path = tmp_path / "bad.data"
    path.write_text(text)
    with pytest.raises(BadInputError) as exc:
        load_ratings(path)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        load_ratings(tmp_path / "nope.data")
    (tmp_path / "b.data").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(BadInputError, match="not readable text"):
        load_ratings(tmp_path / "b.data")


def test_split_is_seeded_disjoint_and_complete():
    tr, te = split_ratings(1000, 0.2, seed=3)
    tr2, te2 = split_ratings(1000, 0.2, seed=3)
    _, te3 = split_ratings(1000, 0.2, seed=4)
    np.testing.assert_array_equal(te, te2)
    np.testing.assert_array_equal(tr, tr2)
    assert te.size == 200 and tr.size == 800
    assert not np.intersect1d(tr, te).size
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(1000))
    assert not np.array_equal(te, te3)
    with pytest.raises(BadInputError, match="test-fraction"):
        split_ratings(10, 1.0, 0)
    with pytest.raises(BadInputError, match="no training or"):
        split_ratings(3, 0.01, 0)


def test_ratings_problem_masks_and_rmse_by_hand(tmp_path):
    path = write_synthetic_ratings(tmp_path / "u.data", users=12, items=15, rank=2, seed=1)
    d = load_ratings(path)
    assert d.rating.min() >= 1 and d.rating.max() <= 5
    p = ratings_problem(path, test_fraction=0.2, seed=5)
    assert not np.any(p.mask & p.test_mask)
    assert p.mask.sum() + p.test_mask.sum() == len(d)
    assert p.test_set_kind == "held-out" and p.description["test"] == p.test_mask.sum()
    W = np.full(p.shape, 3.0)
    # hand computation over the held-out triplets
    _, te = split_ratings(len(d), 0.2, 5)
    expected = np.sqrt(np.mean((3.0 - d.rating[te]) ** 2))
    rel, rmse = p.test_errors(W)
    assert rmse == pytest.approx(expected, rel=1e-12)
    assert rel == pytest.approx(np.linalg.norm(3.0 - d.rating[te]) / np.linalg.norm(d.rating[te]), rel=1e-12)
    assert matrix_metrics(W, p)["test_rmse"] == pytest.approx(expected, rel=1e-12)
    along = metrics_along([W, W + 1.0], p)
    assert along["test_rmse"][0] == pytest.approx(expected, rel=1e-12)
    assert along["test_rmse"][1] == pytest.approx(np.sqrt(np.mean((4.0 - d.rating[te]) ** 2)), rel=1e-12)
    # same seed, same split
    p2 = ratings_problem(path, test_fraction=0.2, seed=5)
    np.testing.assert_array_equal(p.test_mask, p2.test_mask)


def test_explicit_test_mask_only_counts_its_entries_and_default_unchanged():
    W_star = np.arange(12.0).reshape(3, 4)
    mask = np.zeros((3, 4), bool)
    mask[0] = True
    test = np.zeros((3, 4), bool)
    test[1, :2] = True
    p = CompletionProblem(W_star, mask, test_mask=test)
    W = W_star + 1.0
    W[2] += 100.0  # outside Ω ∪ T: must not count
    rel, rmse = p.test_errors(W)
    assert rmse == pytest.approx(1.0)
    assert rel == pytest.approx(np.sqrt(2) / np.linalg.norm([4.0, 5.0]))
    with pytest.raises(BadInputError, match="overlap"):
        CompletionProblem(W_star, mask, test_mask=mask)
    q = synthetic_problem(10, 10, 2, 30, 0)
    assert q.test_set_kind == "unobserved"
    np.testing.assert_array_equal(q.test_set, ~q.mask)


def test_top_block_keeps_the_most_active(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t1\t5\t0\n2\t1\t4\t0\n2\t2\t3\t0\n3\t3\t1\t0\n2\t3\t2\t0\n")
    b = top_block(load_ratings(path), 1, 2)
    assert b.users == ("2",) and set(b.items) == {"1", "3"} and len(b) == 2


def test_cli_data_option_builds_the_ratings_problem(tmp_path):
    path = write_synthetic_ratings(tmp_path / "u.data", users=10, items=12, seed=0)
    parser = argparse.ArgumentParser()
    add_problem_args(parser)
    args = parser.parse_args(["--data", f"ratings:{path}", "--test-fraction", "0.2", "--seed", "2"])
    p = problem_from_args(args)
    assert p.description["kind"] == "ratings" and p.description["test_fraction"] == 0.2
    np.testing.assert_array_equal(p.test_mask, ratings_problem(path, 0.2, 2).test_mask)
    with pytest.raises(BadInputError, match="ratings:PATH"):
        problem_from_args(parser.parse_args(["--data", str(path)]))


@pytest.mark.parametrize("engine", ["torch", "numba"])
def test_discrete_runs_report_the_held_out_rmse(tmp_path, engine):
    """train's recorded test metrics use the held-out ratings, not every unobserved entry (both engines)."""
    from flowsim.initializations import init_factors
    from flowsim.validation.train import train_batched

    if engine == "numba":
        pytest.importorskip("numba")
    path = write_synthetic_ratings(tmp_path / "u.data", users=12, items=15, rank=2, seed=1)
    p = ratings_problem(path, test_fraction=0.2, seed=5)
    factors = init_factors("gaussian", p.shape, depth=1, scale=1.0, seed=0)
    (traj,) = train_batched(p, [factors], optimizer="adam", lr=0.01, iters=50, n_record=5, engine=engine)
    rel, rmse = p.test_errors(traj.W_final)
    assert traj.test_rmse[-1] == pytest.approx(rmse, rel=1e-10)
    assert traj.test_error[-1] == pytest.approx(rel, rel=1e-10)
    # the held-out RMSE differs from the RMSE over all unobserved entries on this problem
    everything = np.sqrt(np.mean((traj.W_final - p.W_star)[~p.mask] ** 2))
    assert abs(everything - rmse) > 0.1
