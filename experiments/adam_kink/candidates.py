"""Which sliding velocity does discrete Adam (fixed beta, eta -> 0) follow at the kink of the ratio penalty?

Usage: python experiments/adam_kink/candidates.py DEPTH LAM T ETAS   (e.g. 1 0.1 0.3 1e-5,3e-6,1e-6)

Candidates, for a one-dimensional null block (k = 1, W = U_r S V_r^T + 0 * u0 v0^T):
  (a) Filippov hull:  alpha*phi(g(+1)) + (1-alpha)*phi(g(-1)), alpha from u0^T Wdot v0 = 0
  (b) equivalent control: phi(g(s)), s in [-1,1] from u0^T Wdot v0 = 0
  (c) moment-averaged: -(g0 + c mu A)/(sqrt(g0^2 + 2 c mu g0 A + c^2 A^2) + eps), mu from u0^T Wdot v0 = 0
with g(s) = g0 + c s A_j, A_j = W_{>j}^T u0 v0^T W_{<j}^T, c = lam/||W||_F, phi(g) = g/(|g| + eps).
"""
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from flowsim.factors import end_product, prefix_products, suffix_products
from flowsim.flows.gradient import layer_gradients, total_gradient
from flowsim.initializations import init_factors
from flowsim.penalties import RatioPenalty, ratio_spectral_grad
from flowsim.problems import synthetic_problem
from flowsim.validation.train import train

EPS = 1e-8
size, rank, obs, depth, lam, seed, scale = 4, 1, 10, int(sys.argv[1]), float(sys.argv[2]), 0, 0.5
T = float(sys.argv[3])
prob = synthetic_problem(size, size, rank, obs, seed)
pen = RatioPenalty()
F0 = init_factors("gaussian", prob.shape, depth, scale, seed)
shapes = [F.shape for F in F0]
offs = np.cumsum([0] + [a * b for a, b in shapes])


def unpack(y):
    return [y[offs[i]:offs[i + 1]].reshape(shapes[i]) for i in range(depth)]


def pack(Fs):
    return np.concatenate([F.ravel() for F in Fs])


def grads(Fs):
    W = end_product(Fs)
    return layer_gradients(Fs, total_gradient(W, prob, pen, lam))


def adam(eta, T, save):
    """W at the times in ``save`` (t = kη) of discrete Adam (flowsim's ``train``, torch.optim.Adam semantics,
    β = (0.9, 0.999), ε = EPS)."""
    at = [int(round(t / eta)) for t in save]
    traj = train(prob, F0, optimizer="adam", lr=eta, iters=max(at), penalty=pen, lam=lam,
                 hyper={"eps": EPS}, record_iters=[0, *at], save_matrices=True, progress=False)
    return dict(zip(save, traj.W[1:]))


def partials(Fs):
    """(W_{N:j+1}, W_{j−1:1}) for each layer j = 1..N."""
    pre, suf = prefix_products(Fs), suffix_products(Fs)
    return [suf[j + 1] for j in range(depth)], [pre[j] for j in range(depth)]


def sliding_parts(Fs, k=1):
    W = end_product(Fs)
    U, s, Vt = np.linalg.svd(W)
    r = s.size - k
    sr = s[:r]
    G = prob.grad(W) + lam * (U[:, :r] * ratio_spectral_grad(sr)) @ Vt[:r]
    c = lam / np.sqrt(np.sum(sr ** 2))
    u0, v0 = U[:, r], Vt[r]
    above, below = partials(Fs)
    g0 = [above[j].T @ G @ below[j].T for j in range(depth)]
    A = [np.outer(above[j].T @ u0, v0 @ below[j].T) for j in range(depth)]
    return g0, A, c, above, below, u0, v0


def phi(g):
    return g / (np.abs(g) + EPS)


def null_vel(vels, above, below, u0, v0):
    return sum(u0 @ above[j] @ vels[j] @ below[j] @ v0 for j in range(depth))


def velocity(rule, Fs):
    g0, A, c, above, below, u0, v0 = sliding_parts(Fs)
    if rule == "b":
        def f(s):
            return null_vel([-phi(g0[j] + c * s * A[j]) for j in range(depth)], above, below, u0, v0)
        lo, hi = f(-1.0), f(1.0)
        s = brentq(f, -1, 1, xtol=1e-15) if lo * hi < 0 else (-1.0 if abs(lo) < abs(hi) else 1.0)
        return [-phi(g0[j] + c * s * A[j]) for j in range(depth)], s
    if rule == "a":
        vp = [-phi(g0[j] + c * A[j]) for j in range(depth)]
        vm = [-phi(g0[j] - c * A[j]) for j in range(depth)]
        fp, fm = null_vel(vp, above, below, u0, v0), null_vel(vm, above, below, u0, v0)
        a = fm / (fm - fp)
        return [a * p + (1 - a) * q for p, q in zip(vp, vm)], 2 * a - 1
    if rule == "c":
        def vel(mu):
            return [-(g0[j] + c * mu * A[j])
                    / (np.sqrt(g0[j] ** 2 + 2 * c * mu * g0[j] * A[j] + (c * A[j]) ** 2) + EPS)
                    for j in range(depth)]
        def f(mu):
            return null_vel(vel(mu), above, below, u0, v0)
        lo, hi = f(-1.0), f(1.0)
        mu = brentq(f, -1, 1, xtol=1e-15) if lo * hi < 0 else (-1.0 if abs(lo) < abs(hi) else 1.0)
        return vel(mu), mu
    raise ValueError(rule)


def free_rhs(t, y):
    return pack([-phi(g) for g in grads(unpack(y))])


def smin_event(t, y):
    s = np.linalg.svd(end_product(unpack(y)), compute_uv=False)
    return s[-1] - 1e-9 * s[0]
smin_event.terminal = True
smin_event.direction = -1


def model(rule, save):
    sol = solve_ivp(free_rhs, (0, T), pack(F0), method="Radau", events=smin_event, rtol=1e-10, atol=1e-12,
                    dense_output=True)
    t_hit = sol.t[-1] if sol.status == 1 else None
    out = {}
    if t_hit is None:
        for t in save:
            out[t] = sol.sol(t)
        return out, None, None
    for t in save:
        if t <= t_hit:
            out[t] = sol.sol(t)
    ctrl = []

    def rhs(t, y):
        v, s = velocity(rule, unpack(y))
        ctrl.append((t, s))
        return pack(v)

    rest = [t for t in save if t > t_hit]
    sol2 = solve_ivp(rhs, (t_hit, T), sol.y[:, -1], method="Radau", t_eval=rest, rtol=1e-10, atol=1e-12)
    for t, y in zip(sol2.t, sol2.y.T):
        out[t] = y
    return out, t_hit, (sol2.status, sol2.message, ctrl[-1] if ctrl else None)


save = [T * f for f in (0.25, 0.5, 0.75, 1.0)]
res = {}
for rule in "abc":
    t0 = time.time()
    out, t_hit, info = model(rule, save)
    res[rule] = out
    sv = np.linalg.svd(end_product(unpack(out[T])), compute_uv=False)
    print(f"model {rule}: t_hit={t_hit} info={info[:2] if info else None} "
          f"ctrl_end={info[2] if info else None} "
          f"sigma(T)={np.array2string(sv, precision=5)} wall={time.time()-t0:.1f}s", flush=True)
for eta in [float(x) for x in sys.argv[4].split(",")]:
    t0 = time.time()
    out = adam(eta, T, save)
    sv = np.linalg.svd(out[T], compute_uv=False)
    line = f"adam eta={eta:g} ({time.time()-t0:.0f}s) sigma(T)={np.array2string(sv, precision=5)}"
    for rule in "abc":
        errs = []
        for t in save:
            Wa, Wm = out[t], end_product(unpack(res[rule][t]))
            errs.append(np.linalg.norm(Wa - Wm) / np.linalg.norm(Wm))
        line += f"\n   vs {rule}: e_W at {save}: " + " ".join(f"{e:.2e}" for e in errs)
    print(line, flush=True)
