"""Shared style of the gallery: one colour per depth (the same in every figure), colours for λ and for the
checker's verdicts, font sizes readable at README width, and the atomic PNG/PDF writer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: one colour per depth N, used by every figure (colour-blind-safe Okabe–Ito hues)
DEPTH_COLORS = {1: "#0072B2", 2: "#009E73", 3: "#E69F00", 4: "#D55E00", 5: "#CC79A7"}
#: verdict colours of the checker chart
VERDICT_COLORS = {"holds": "#009E73", "approximate": "#E69F00", "fails": "#D55E00", "error": "#7F7F7F"}
#: the discrete optimizer / flow pairs of the validation figure
PAIR_COLORS = {"gf": "#0072B2", "gd-modified": "#009E73", "adam-ode": "#CC79A7"}

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "legend.fontsize": 9,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "lines.linewidth": 1.6,
}


def pyplot():
    """matplotlib.pyplot on the Agg backend with the gallery's rcParams."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(RC)
    return plt


def depth_color(depth: int) -> str:
    """The colour of depth N (grey beyond 5)."""
    return DEPTH_COLORS.get(int(depth), "0.4")


def lam_colors(lams: Sequence[float]) -> dict[float, tuple]:
    """One colour per penalty strength λ: black for λ = 0, then a sequential (viridis) scale in log λ."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    pos = sorted(x for x in lams if x > 0)
    out: dict[float, tuple] = {0.0: (0.0, 0.0, 0.0, 1.0)}
    for i, lam in enumerate(pos):
        out[lam] = cmap(0.1 + 0.8 * i / max(len(pos) - 1, 1))
    return out


def positive(t: np.ndarray) -> np.ndarray:
    """Indices of the strictly positive entries (what a log axis can show)."""
    return np.flatnonzero(np.asarray(t) > 0)


def save(fig, out_dir: str | Path, name: str, pdf: bool = False) -> list[Path]:
    """Write ``name.png`` (and ``name.pdf``) into ``out_dir`` atomically; close the figure."""
    import io

    from flowsim.io import atomic_write_bytes

    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in ("png", "pdf") if pdf else ("png",):
        buf = io.BytesIO()
        # no creation date in the PDF, so that re-plotting the same data gives the same bytes
        fig.savefig(buf, format=ext, metadata={"CreationDate": None} if ext == "pdf" else None)
        path = out / f"{name}.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    plt.close(fig)
    return written


def mark_stop(ax, x: float, y: float, color) -> None:
    """An × where a run stopped early (step budget or failure)."""
    ax.plot([x], [y], marker="x", ms=7, mew=2, color=color, ls="none", zorder=5)
