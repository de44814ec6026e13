"""Theorems as printed and as derived, sympy derivations, the claims checker, and RC20's 2×2 example."""
