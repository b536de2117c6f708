"""watcher's tests: unit/ mirrors the package, e2e/ runs real processes and sockets on
loopback, endurance/ the chaos scenarios, fakes/ protocol-speaking test doubles."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the repository's root
