"""The chattering of a 2×2 null block under a sign-like feedback with momentum (docs/math.md §8.7):

    B ← B − η·m,  m ← β₁m + (1 − β₁)(d + polar(B)),

compared with the closure "independent signs in the singular frame of E[Z]" for Z = polar(B): exact with
β₁ = 0, off by up to ≈ 0.31 in the second moments with β₁ = 0.9. Usage: python momentum_model.py
"""

import numpy as np


def polar(B: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(B)
    return U @ Vt


def closure(M: np.ndarray) -> np.ndarray:
    """E[Z_ij Z_kl] for Z = P diag(s) Qᵀ, s_a = ±1 independent with means μ_a (M = P diag(μ) Qᵀ)."""
    P, mu, Qt = np.linalg.svd(M)
    Es = np.outer(mu, mu)
    np.fill_diagonal(Es, 1.0)
    S = np.zeros((2, 2, 2, 2))
    for a in range(2):
        for b in range(2):
            S += Es[a, b] * np.einsum("i,j,k,l->ijkl", P[:, a], Qt[a], P[:, b], Qt[b])
    return S


def main() -> None:
    rng = np.random.default_rng(0)
    d = np.array([[0.3, 0.2], [-0.1, -0.4]])
    eta = 1e-5
    for trial in range(3):
        for beta1 in (0.0, 0.9):
            B = 1e-3 * rng.standard_normal((2, 2))
            m = np.zeros((2, 2))
            Zs = []
            for k in range(200_000):
                Z = polar(B)
                m = beta1 * m + (1 - beta1) * (d + Z)
                B = B - eta * m
                if k > 50_000:
                    Zs.append(Z)
            Z_all = np.array(Zs)
            M = Z_all.mean(0)
            S = np.einsum("kij,kab->ijab", Z_all, Z_all) / len(Z_all)
            print(f"start {trial} beta1={beta1}: E[Z]={np.round(M, 4).ravel()} (-d={(-d).ravel()}), "
                  f"max |E[Z⊗Z] - closure| = {np.abs(S - closure(M)).max():.4f}")


if __name__ == "__main__":
    main()
