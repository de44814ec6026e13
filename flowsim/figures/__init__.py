"""The README gallery (``flowsim figures``): paper-style figures regenerated from cached run directories.

* :mod:`flowsim.figures.gallery` — one function per figure and the list
:data:`flowsim.figures.gallery.FIGURES`;
* :mod:`flowsim.figures.jobs` — the runs behind them and their cache (``runs/figures`` by default);
* :mod:`flowsim.figures.style` — the shared style (one colour per depth in every figure);
* :mod:`flowsim.cli.figures` — the ``flowsim figures`` command.
"""

from .gallery import FIGURES, PAPER, PREVIEW, Figure, Setting
from .jobs import Job, ensure_jobs, is_done, run_job

__all__ = ["FIGURES", "PAPER", "PREVIEW", "Figure", "Job", "Setting", "ensure_jobs", "is_done", "run_job"]
