"""What every benchmark ends with: a markdown table on stdout and its figures as JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str:
    """A markdown table of ``rows``: ``columns`` maps each row key to its heading."""
    lines = [
        "| " + " | ".join(columns.values()) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for key in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(name: str, met: bool, detail: str) -> dict[str, Any]:
    """One target and whether the measurement meets it (printed and kept in the JSON)."""
    print(f"{'MET ' if met else 'MISSED'} {name}: {detail}")
    return {"target": name, "met": met, "detail": detail}


def write(name: str, figures: Mapping[str, Any]) -> Path:
    """``benchmarks/results/NAME.json`` with the figures and where they were measured."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # The machine is shared: a high load means slower, noisier figures.
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        **figures,
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"figures written to {shown}")
    return path
