"""Parameter sweeps (docs/contract.md): TOML grids, stable point ids, resumable runs on local processes or
Dask, ``summary.csv`` rebuilt from the run directories, and Markdown reports (Experiment 1)."""

from .config import Point, SweepConfig, expand_grid, load_config, parse_config, point_id
from .runner import SweepOutcome, run_point, run_sweep
from .summary import collect_rows, read_summary, write_summary

__all__ = ["Point", "SweepConfig", "SweepOutcome", "collect_rows", "expand_grid", "load_config",
           "parse_config", "point_id", "read_summary", "run_point", "run_sweep", "write_summary"]
