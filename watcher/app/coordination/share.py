"""Who takes which source: the pure arithmetic of sharing sources between replicas.

Each replica polls at most its fair share, ``ceil(sources / replicas)``: together the
replicas can hold every source, and none holds them all while others idle. A replica above
its share (another one joined) gives up what it holds beyond it, idle sources first; one
below it takes free sources. Free sources are tried in an order of the replica's own (a hash
of the replica and the source), so that replicas starting together do not all race for the
same source first.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


def fair_share(sources: int, replicas: int) -> int:
    return math.ceil(sources / max(1, replicas))


@dataclass(frozen=True)
class Moves:
    release: tuple[str, ...]  # held beyond the share: give up now
    candidates: tuple[str, ...]  # free sources to try, in this order...
    room: int  # ...until this many were taken


def _spread(me: str, source: str) -> bytes:
    return hashlib.blake2b(f"{me}\0{source}".encode(), digest_size=8).digest()


def rebalance(
    sources: Sequence[str],
    holders: Mapping[str, str],
    me: str,
    replicas: int,
    *,
    busy: Collection[str] = (),
) -> Moves:
    """What replica ``me`` should do, given who holds which source now (``holders``:
    source -> replica) and how many replicas there are. A ``busy`` source (a poll is running)
    is not given up this time: the next round will."""
    share = fair_share(len(sources), replicas)
    mine = sorted(s for s in sources if holders.get(s) == me)
    excess = len(mine) - share
    release: list[str] = []
    if excess > 0:
        release = [s for s in reversed(mine) if s not in busy][:excess]
    free = sorted((s for s in sources if s not in holders), key=lambda s: _spread(me, s))
    room = max(0, share - len(mine))
    return Moves(tuple(release), tuple(free) if room else (), room)
