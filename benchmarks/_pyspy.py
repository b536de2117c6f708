"""Profile another process with py-spy (a development tool: ``pip install py-spy``), and read
its collapsed stacks as the functions that hold the most samples, inclusive."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def recording(pid: int, path: Path | None, rate: int = 100) -> Iterator[None]:
    """py-spy samples ``pid`` into ``path`` (collapsed stacks) while the block runs; nothing
    when ``path`` is None."""
    if path is None:
        yield
        return
    found = Path(sys.executable).parent / "py-spy"
    binary = str(found) if found.exists() else shutil.which("py-spy")
    if binary is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    command = [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    spy = subprocess.Popen([*command, "-o", str(path)], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def hot(path: Path, top: int = 25, within: str = "") -> list[tuple[str, float]]:
    """The ``top`` frames by inclusive share of samples (each frame counted once per
    stack); ``within`` keeps only frames whose text contains it (e.g. ``watcher/``)."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            if within in frame:
                inclusive[frame] += n
    return [(frame, n / total) for frame, n in inclusive.most_common(top)] if total else []
