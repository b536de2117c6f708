"""Start-up: how long ``watcher --help`` takes, and which imports cost the most (issue 7, #6).

Runs the installed ``watcher`` console script (and ``python -m watcher``) ``--runs`` times
each as a subprocess, and reports the median wall time; then one ``python -X importtime``
run names the top offenders (cumulative microseconds of each top-level import).

    .venv/bin/python -m benchmarks.startup [--runs 15]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._report import table, verdict, write

TARGET_S = 0.4
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def commands() -> dict[str, list[str]]:
    script = Path(sys.executable).parent / "watcher"
    found = {"python -m watcher --help": [sys.executable, "-m", "watcher", "--help"]}
    if script.exists():
        found = {"watcher --help": [str(script), "--help"], **found}
    return found


def wall_times(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def import_offenders(top: int = 12) -> list[dict[str, Any]]:
    """The heaviest imports of ``python -m watcher --help``: top-level ones by cumulative
    time, each with the package it came through."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "watcher", "--help"],
        check=True,
        capture_output=True,
        text=True,
    )
    rows: list[dict[str, Any]] = []
    for line in done.stderr.splitlines():
        found = _LINE.match(line)
        if found:
            own, cumulative, indent, name = found.groups()
            rows.append(
                {
                    "module": name,
                    "depth": len(indent) // 2,
                    "self_ms": int(own) / 1000,
                    "cumulative_ms": int(cumulative) / 1000,
                }
            )
    total = sum(row["self_ms"] for row in rows)
    outermost = [row for row in rows if row["depth"] == 0]
    outermost.sort(key=lambda row: row["cumulative_ms"], reverse=True)
    return [{**row, "share": f"{row['cumulative_ms'] / total:.0%}"} for row in outermost[:top]]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    wall_times([sys.executable, "-m", "watcher", "--help"], 2)  # warm the page cache
    rows = []
    for label, command in commands().items():
        times = wall_times(command, args.runs)
        rows.append(
            {
                "command": label,
                "runs": args.runs,
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
            }
        )
    bare = wall_times([sys.executable, "-c", "pass"], args.runs)
    rows.append(
        {
            "command": "python -c pass (interpreter alone)",
            "runs": args.runs,
            "median_s": round(statistics.median(bare), 3),
            "min_s": round(min(bare), 3),
            "max_s": round(max(bare), 3),
        }
    )
    print(
        table(
            rows, {"command": "command", "median_s": "median s", "min_s": "min s", "max_s": "max s"}
        )
    )
    print()
    offenders = import_offenders()
    print("heaviest imports of `python -m watcher --help` (python -X importtime):")
    print(
        table(
            offenders,
            {
                "module": "module",
                "cumulative_ms": "cumulative ms",
                "self_ms": "self ms",
                "share": "share",
            },
        )
    )
    print()
    checks = [
        verdict(
            f"{row['command']} <= {TARGET_S} s",
            row["median_s"] <= TARGET_S,
            f"median {row['median_s']} s over {row['runs']} runs",
        )
        for row in rows[:-1]
    ]
    write("startup", {"rows": rows, "imports": offenders, "targets": checks})
