"""Events and Jacobians of :func:`flowsim.integrator.integrate`, against closed forms and solve_ivp."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from flowsim.integrator import MIN_RTOL, integrate


def decay(t: float, y: np.ndarray) -> np.ndarray:
    return -y


def level(c: float, terminal: bool | int = False, direction: float = 0.0):
    def event(t: float, y: np.ndarray) -> float:
        return float(y[0] - c)

    event.__name__ = f"y_below_{c:g}"
    event.terminal = terminal  # type: ignore[attr-defined]
    event.direction = direction  # type: ignore[attr-defined]
    return event


@pytest.mark.parametrize("method", ["DOP853", "RK45", "Radau", "LSODA"])
def test_recorded_event_located_at_closed_form(method: str) -> None:
    """ẏ = −y, y(0) = 1 crosses c at t = ln(1/c); the event is recorded and the run goes on to t_end."""
    grid = np.linspace(0.0, 5.0, 11)
    res = integrate(decay, np.array([1.0]), grid, method=method, rtol=1e-10, atol=1e-13,
                    events=[level(0.3), level(0.01)])
    assert res.status == "ok" and res.t[-1] == 5.0
    assert res.t_events[0] == pytest.approx([math.log(1 / 0.3)], abs=1e-8)
    assert res.y_events[0][0, 0] == pytest.approx(0.3, abs=1e-9)
    assert res.t_events[1] == pytest.approx([math.log(100.0)], abs=1e-8)


def test_terminal_event_stops_and_saves_up_to_it() -> None:
    grid = np.linspace(0.0, 5.0, 11)
    res = integrate(decay, np.array([1.0]), grid, rtol=1e-10, atol=1e-13, events=[level(0.3, terminal=True)])
    t_hit = math.log(1 / 0.3)
    assert res.status == "event" and res.event_index == 0 and not res.success
    assert res.t_last == pytest.approx(t_hit, abs=1e-9)
    assert "y_below_0.3" in res.message and "t=1.2039" in res.message
    np.testing.assert_array_equal(res.t, grid[grid <= t_hit])
    np.testing.assert_allclose(res.y[:, 0], np.exp(-res.t), rtol=1e-8)
    assert res.y_last is not None and res.y_last[0] == pytest.approx(0.3, abs=1e-9)


def test_direction_and_terminal_count_as_solve_ivp() -> None:
    """y = cos(t) (as ẏ = (y₂, −y₁)): the level 0.5 is crossed downward at π/3, 2π + π/3, ... and upward at
    2π − π/3, ...; a terminal count of 2 stops at the second crossing of the chosen direction."""

    def osc(t: float, y: np.ndarray) -> np.ndarray:
        return np.array([y[1], -y[0]])

    grid = np.linspace(0.0, 20.0, 41)
    down, up = level(0.5, direction=-1.0), level(0.5, direction=1.0)
    res = integrate(osc, np.array([1.0, 0.0]), grid, rtol=1e-11, atol=1e-13, events=[down, up])
    third = math.pi / 3
    assert res.t_events[0] == pytest.approx([k * 2 * math.pi + third for k in range(4)], abs=1e-8)
    assert res.t_events[1] == pytest.approx([2 * math.pi - third, 4 * math.pi - third, 6 * math.pi - third],
                                            abs=1e-8)
    twice = level(0.5, terminal=2, direction=1.0)
    res2 = integrate(osc, np.array([1.0, 0.0]), grid, rtol=1e-11, atol=1e-13, events=[down, twice])
    assert res2.status == "event" and res2.event_index == 1
    assert res2.t_last == pytest.approx(4 * math.pi - third, abs=1e-8)
    assert len(res2.t_events[0]) == 2  # the downward crossings before the stop are recorded too
    ref = solve_ivp(osc, (0.0, 20.0), [1.0, 0.0], method="DOP853", rtol=1e-11, atol=1e-13,
                    events=[down, twice])
    for mine, theirs in zip(res2.t_events, ref.t_events):
        np.testing.assert_allclose(mine, theirs, atol=1e-8)


def test_no_events_gives_empty_lists_and_unchanged_numbers() -> None:
    grid = np.linspace(0.0, 2.0, 5)
    plain = integrate(decay, np.array([1.0, 2.0]), grid, rtol=1e-9, atol=1e-12)
    with_ev = integrate(decay, np.array([1.0, 2.0]), grid, rtol=1e-9, atol=1e-12, events=[level(-1.0)])
    np.testing.assert_array_equal(plain.y, with_ev.y)
    assert plain.t_events == [] and with_ev.t_events[0].shape == (0,) and with_ev.y_events[0].shape == (0, 2)


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA"])
def test_jacobian_goes_to_implicit_solvers(method: str) -> None:
    """A stiff linear system with its exact Jacobian: the solver calls it (njev > 0) and matches expm."""
    A = np.array([[-1000.0, 1.0], [0.0, -0.5]])
    calls = [0]

    def jac(t: float, y: np.ndarray) -> np.ndarray:
        calls[0] += 1
        return A

    grid = np.array([0.0, 1.0, 3.0])
    res = integrate(lambda t, y: A @ y, np.array([1.0, 1.0]), grid, method=method, rtol=1e-10, atol=1e-12,
                    jac=jac)
    assert res.status == "ok" and res.njev > 0 and calls[0] > 0
    from scipy.linalg import expm

    np.testing.assert_allclose(res.y[-1], expm(3.0 * A) @ [1.0, 1.0], rtol=1e-6, atol=1e-10)


def test_jacobian_ignored_by_explicit_solver() -> None:
    res = integrate(decay, np.array([1.0]), np.array([0.0, 1.0]), jac=lambda t, y: 1 / 0)
    assert res.status == "ok" and res.njev == 0


def test_effective_rtol_recorded_without_warning(recwarn: pytest.WarningsRecorder) -> None:
    res = integrate(decay, np.array([1.0]), np.array([0.0, 1.0]), rtol=1e-16, atol=1e-16)
    assert res.rtol == MIN_RTOL == pytest.approx(2.22e-14, rel=1e-3) and res.stats()["rtol"] == res.rtol
    assert not [w for w in recwarn if "rtol" in str(w.message)]
    assert res.y[-1, 0] == pytest.approx(math.exp(-1.0), rel=1e-12)


def test_min_step_reports_a_stall() -> None:
    """ẏ = −(y − 1)/(|y − 1| + 1e-9) arrives at 1 at t = 1 and is stiff after: DOP853's step collapses."""

    def sign_flow(t: float, y: np.ndarray) -> np.ndarray:
        return -(y - 1.0) / (np.abs(y - 1.0) + 1e-9)

    res = integrate(sign_flow, np.array([2.0]), np.array([0.0, 3.0]), rtol=1e-8, atol=1e-12, min_step=1e-6,
                    stall_steps=20, max_steps=100_000)
    assert res.status == "stalled" and res.t_last == pytest.approx(1.0, abs=1e-4)
