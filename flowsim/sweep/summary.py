"""``summary.csv`` of a sweep, rebuilt from the run directories so it can never disagree with them.

One row per point of ``sweep.json`` (in its order): ``id``, ``status`` (``pending`` when the point has no
finished run.json), ``message``, the point's options (``p.NAME``), the scalar final metrics of its run.json
(``loss``, ``test_error``, ``test_rmse``, ``erank``, norms, ...) and ``wall_time_s``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..errors import BadInputError
from ..io import atomic_write_bytes, read_json

SUMMARY_CSV = "summary.csv"
LEAD_COLUMNS = ("id", "status", "message")
TAIL_COLUMNS = ("wall_time_s",)


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return str(v)


def collect_rows(out: str | Path) -> list[dict[str, Any]]:
    """Rows of the summary: one per point listed in ``out/sweep.json``, read from ``out/points/<id>/``."""
    from .runner import FINISHED, POINT_JSON, RUN_JSON, SWEEP_JSON, point_dir

    out = Path(out)
    try:
        sweep = read_json(out / SWEEP_JSON)
    except (OSError, ValueError):
        raise BadInputError(f"{out} is not a sweep folder (no readable {SWEEP_JSON})") from None
    rows = []
    for entry in sweep.get("points", []):
        pid = entry["id"]
        d = point_dir(out, pid)
        try:
            params = read_json(d / POINT_JSON)["params"]
        except (OSError, ValueError, KeyError):
            params = entry.get("params", {})
        row: dict[str, Any] = {"id": pid, "status": "pending", "message": ""}
        row.update({f"p.{k}": v for k, v in params.items()})
        try:
            info = read_json(d / RUN_JSON)
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and info.get("status") in FINISHED:
            row["status"] = info["status"]
            row["message"] = str(info.get("message", "")).replace("\n", " ")
            final = info.get("final") or {}
            for k, v in final.items():
                if _scalar(v):
                    row[k] = float(v) if v in ("nan", "inf", "-inf") else v
            row["wall_time_s"] = info.get("wall_time_s")
        rows.append(row)
    return rows


def summary_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Column order: id, status, message, options (sorted), metrics (first-seen order), wall time."""
    params: list[str] = sorted({k for r in rows for k in r if k.startswith("p.")})
    metrics: list[str] = []
    for r in rows:
        for k in r:
            special = k in LEAD_COLUMNS or k in TAIL_COLUMNS or k.startswith("p.")
            if not special and k not in metrics:
                metrics.append(k)
    return [*LEAD_COLUMNS, *params, *metrics, *TAIL_COLUMNS]


def render_csv(rows: list[dict[str, Any]]) -> str:
    """The CSV text of ``rows``."""
    cols = summary_columns(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue()


def write_summary(out: str | Path) -> Path:
    """Rebuild ``out/summary.csv`` from the run directories (atomic write). Returns its path."""
    out = Path(out)
    path = out / SUMMARY_CSV
    atomic_write_bytes(path, render_csv(collect_rows(out)).encode())
    return path


def read_summary(path: str | Path) -> list[dict[str, str]]:
    """Read a ``summary.csv`` back as a list of string dictionaries."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
