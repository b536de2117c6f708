"""Which requests a source spends when it has a request budget: pure ranking, no I/O, no clock.

A steady cycle under ``max_requests_per_minute`` can afford only some of the requests a
whole cycle would make. The requests to choose from (:class:`Probe`):

- ``new``: the listing of jobs created since the watermark (usually one page). It may reach
  further back (``reach``): unfiltered, newest first, one page also shows the newest
  followed jobs whatever their status, so the jobs of a young account's short-lived
  statuses (queued, validating) are all checked for that one request;
- ``page``: page ``k`` of the listing of one status. Listings come newest first, so page
  ``k`` covers the followed jobs of that status ranked ``k * page_size`` onwards by
  ``created_at``: one request checks up to ``page_size`` jobs;
- ``detail``: one job, one request.

:class:`Adaptive` ranks them by the changes each request is expected to find: the
probability that a followed job changed since it was last checked, summed over what the
probe covers, over the probe's cost (a job that left for a terminal status costs one more
request, the detail that tells how it ended; one that moved on to another followed status
shows in that status's listing). Jobs near or past their expected end and jobs in
short-lived statuses weigh most; new jobs count for the new-jobs listing and, while they
are still in their first status, for that status's first page; the new-jobs listing
reaches back over the newest followed jobs (at most ``reach_room`` of them, so that one
page still holds them with the new ones) as far as that raises its worth per request. A
job unchecked for
``max_staleness`` comes first, so that none starves. :class:`RoundRobin` is the uniform
alternative: every listing in turn, the one made longest ago first, as a whole cycle would
make them, only spread over cycles.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FORCE = 10.0  # the weight of a job past max_staleness: more than any likely change
EARLY_END = 0.1  # share of runs that end (fail, are cancelled) at a random moment
SPREAD = 0.2  # of an expected duration, when nothing better is known
MIN_SPREAD = 60.0
DWELL_WEIGHT = 0.05  # of each new observation in a status's typical time
MIN_DWELL, MAX_DWELL = 5.0, 7 * 86400.0
DEFAULT_DWELL = 3600.0
PARKED = 3.0  # past this many typical times in a status, a job counts as parked


@dataclass(frozen=True, slots=True)
class Probe:
    """One request a budgeted cycle may make."""

    kind: Literal["new", "page", "detail"]
    status: str = ""
    page: int = 0
    job_id: str = ""
    # ``new`` only: list the jobs created from this ``created_at`` on, not only those since
    # the watermark. Not part of the probe's identity (it is the same listing, wider).
    reach: int | None = field(default=None, compare=False)


NEW = Probe("new")


@dataclass(frozen=True, slots=True)
class Followed:
    """What the ranking knows of a followed job."""

    job_id: str
    status: str
    created_at: int
    since: float  # when it entered its status, as far as watcher knows
    checked_at: float | None  # the last answer that showed it (None: none in this process)
    expected_end: float | None = None  # when it should leave its status, if anything says
    spread: float = MIN_SPREAD  # how far from expected_end it may well end
    listable: bool = True  # its status can be listed (an undocumented one cannot)
    # Its page did not show it when it was due (pages shift as jobs come and go): it does
    # not make that page urgent again (a neighbouring page shows it).
    page_missed: bool = False


@dataclass(frozen=True)
class Situation:
    """Everything a policy ranks from, for one cycle."""

    now: float
    jobs: Sequence[Followed]
    page_size: int
    allowance: int  # requests this cycle may spend
    max_staleness: float
    new_checked_at: float | None  # the last listing of new jobs
    new_rate: float  # new jobs per second, as observed
    # Statuses usually left for one that is not followed (terminal): a job gone from their
    # listing costs a detail to learn where it went.
    ending: frozenset[str] = frozenset()
    initial: str | None = None  # the status new jobs start in (its first page shows them)
    probed: Mapping[Probe, float] = field(default_factory=dict)  # when each listing last ran
    layout: Layout = field(default_factory=dict)  # the jobs each page should show
    # How many of the newest followed jobs the new-jobs listing may reach back over (0: it
    # lists only the jobs created since the watermark).
    reach_room: int = 0


class Policy(Protocol):
    def rank(self, situation: Situation) -> list[Probe]:
        """Probes in the order to make them; the cycle stops when its allowance is spent."""
        ...


class DwellTimes:
    """Typical time a job stays in each status: a prior, moved by what is observed."""

    def __init__(self, priors: Mapping[str, float], default: float = DEFAULT_DWELL) -> None:
        self._mean = dict(priors)
        self._default = default

    def mean(self, status: str) -> float:
        return self._mean.get(status, self._default)

    def observe(self, status: str, seconds: float) -> None:
        value = min(max(seconds, MIN_DWELL), MAX_DWELL)
        mean = self.mean(status)
        self._mean[status] = mean + DWELL_WEIGHT * (value - mean)


def expected_duration(view: Mapping[str, Any]) -> float | None:
    """``metadata.expected_duration_seconds`` when it is a positive number (or a numeric
    string: batch metadata values are strings)."""
    metadata = view.get("metadata")
    raw = metadata.get("expected_duration_seconds") if isinstance(metadata, Mapping) else None
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw) if math.isfinite(raw) and raw > 0 else None


def _log_survival(t: float, end: float, scale: float) -> float:
    """log P(still in the status at ``t``) for an end spread logistically around ``end``:
    the hazard rises through ``end`` and stays at ``1/scale`` after it (an overdue job
    stays likely to end any moment)."""
    x = (t - end) / scale
    return -(x + math.log1p(math.exp(-x))) if x > 0 else -math.log1p(math.exp(x))


def likelihood(job: Followed, now: float, dwell: DwellTimes) -> float:
    """The probability that ``job`` changed status since it was last checked."""
    last = job.checked_at if job.checked_at is not None else job.since
    elapsed = max(0.0, now - last)
    if elapsed == 0.0:
        return 0.0
    if job.expected_end is not None:
        scale = max(job.spread, MIN_SPREAD) * math.sqrt(3) / math.pi
        ended = _log_survival(now, job.expected_end, scale) - _log_survival(
            last, job.expected_end, scale
        )
        length = max(job.expected_end - job.since, MIN_SPREAD)
        return 1.0 - math.exp(ended - EARLY_END * elapsed / length)
    # No expected end: the status's typical time; a job that has already stayed several
    # times that (parked, stuck) is expected to stay a good while longer.
    age = max(0.0, now - job.since)
    return 1.0 - math.exp(-elapsed / max(dwell.mean(job.status), age / PARKED))


Layout = Mapping[str, Sequence[Sequence[Followed]]]


def pages(
    jobs: Iterable[Followed], page_size: int, stay: Callable[[Followed], float] | None = None
) -> dict[str, list[list[Followed]]]:
    """The listable jobs by status, newest first, cut into the pages a listing returns.

    ``stay`` is the probability that a job is still in its status: a job's expected place
    in the listing counts only the newer jobs still there (those that left shift it up)."""
    by_status: dict[str, list[Followed]] = {}
    for job in jobs:
        if job.listable:
            by_status.setdefault(job.status, []).append(job)
    out: dict[str, list[list[Followed]]] = {}
    for status in sorted(by_status):
        chunks: list[list[Followed]] = []
        place = 0.0
        for job in sorted(by_status[status], key=lambda j: (-j.created_at, j.job_id)):
            k = int(place // page_size)
            while len(chunks) <= k:
                chunks.append([])
            chunks[k].append(job)
            place += 1.0 if stay is None else min(1.0, max(0.0, stay(job)))
        out[status] = chunks
    return out


def is_stale(job: Followed, situation: Situation) -> bool:
    """Unchecked for ``max_staleness``: it goes first (unless its page already missed it)."""
    if job.page_missed:
        return False
    return job.checked_at is None or situation.now - job.checked_at >= situation.max_staleness


class _Greedy:
    """The state of one greedy ranking: what each job is worth, which page shows it, what
    is already covered and how much allowance is left."""

    def __init__(self, s: Situation, dwell: DwellTimes) -> None:
        self.weight: dict[str, float] = {}  # what checking each job is worth now
        self.chance: dict[str, float] = {}  # the follow-up detail each job may cost
        for job in s.jobs:
            p = likelihood(job, s.now, dwell)
            self.weight[job.job_id] = p + (FORCE if is_stale(job, s) else 0.0)
            # Leaving a status for another followed one shows in that status's listing;
            # leaving for a terminal one takes a detail.
            self.chance[job.job_id] = p if job.status in s.ending else 0.0
        self.members: dict[Probe, list[str]] = {}
        self.page_of: dict[str, Probe] = {}
        for status, chunks in s.layout.items():
            for k, chunk in enumerate(chunks):
                probe = Probe("page", status, k)
                self.members[probe] = [j.job_id for j in chunk]
                self.page_of.update((j.job_id, probe) for j in chunk)
        self.bonus: dict[Probe, float] = {}
        self.new_value = self._new_listing(s, dwell)
        self.new_taken = False
        self.covered: set[str] = set()
        self.reach, self.reached = self._reach_back(s)
        self.details = [(-w, job_id) for job_id, w in self.weight.items() if w > 0]
        heapq.heapify(self.details)
        self.left = float(s.allowance)

    def _new_listing(self, s: Situation, dwell: DwellTimes) -> float:
        """What the new-jobs listing is worth. New jobs since the last listing of them; those
        still in their first status show on that status's first page too (its bonus)."""
        since = None if s.new_checked_at is None else s.now - s.new_checked_at
        if since is None or since >= s.max_staleness:
            return FORCE  # the watermark moves only with this listing
        new_value = s.new_rate * since
        if s.initial is not None and since > 0:
            first = Probe("page", s.initial, 0)
            mean = dwell.mean(s.initial)
            self.bonus[first] = new_value * mean / since * (1.0 - math.exp(-since / mean))
            self.members.setdefault(first, [])
        return new_value

    def _reach_back(self, s: Situation) -> tuple[int | None, list[str]]:
        """How far back the new-jobs listing should reach: over the newest followed jobs
        (at most ``reach_room``), as far as their worth per request is highest. Returns the
        oldest ``created_at`` to list and the jobs that covers (none: no reach)."""
        newest = sorted(s.jobs, key=lambda j: (-j.created_at, j.job_id))[: max(0, s.reach_room)]
        value, cost = max(0.0, self.new_value), 1.0
        best, chosen = value / cost, 0
        for n, job in enumerate(newest, 1):
            value += self.weight[job.job_id]
            cost += self.chance[job.job_id]
            if value / cost > best:
                best, chosen = value / cost, n
        if chosen == 0:
            return None, []
        covers = newest[:chosen]
        return covers[-1].created_at, [j.job_id for j in covers]

    def _new_worth(self) -> tuple[float, float]:
        """The new-jobs listing's worth and cost, given what is already covered."""
        left = [i for i in self.reached if i not in self.covered]
        value = max(0.0, self.new_value) + sum(self.weight[i] for i in left)
        return value, 1.0 + sum(self.chance[i] for i in left)

    def best(self) -> Probe | None:
        """The request worth most per request it costs, or ``None`` when none is worth any."""
        best: tuple[float, Probe] | None = None
        if not self.new_taken:
            value, cost = self._new_worth()
            if value > 0:
                best = (value / cost, NEW if self.reach is None else Probe("new", reach=self.reach))
        for probe, ids in self.members.items():
            value = sum(self.weight[i] for i in ids if i not in self.covered)
            value += self.bonus.get(probe, 0.0)
            if value > 0:
                cost = 1.0 + sum(self.chance[i] for i in ids if i not in self.covered)
                if best is None or value / cost > best[0]:
                    best = (value / cost, probe)
        details = self.details
        while details and details[0][1] in self.covered:
            heapq.heappop(details)
        if details and (best is None or -details[0][0] > best[0]):
            best = (-details[0][0], Probe("detail", job_id=details[0][1]))
        return best[1] if best is not None else None

    def take(self, probe: Probe) -> None:
        """``probe`` is made: what it covers is worth nothing more, its cost is spent."""
        if probe.kind == "page":
            ids = [i for i in self.members.pop(probe) if i not in self.covered]
            self.left -= 1.0 + sum(self.chance[i] for i in ids)
            self.covered.update(ids)
            if self.new_value < FORCE:
                self.new_value -= self.bonus.pop(probe, 0.0)
        elif probe.kind == "detail":
            heapq.heappop(self.details)
            self.covered.add(probe.job_id)
            self.left -= 1.0
            page = self.page_of.get(probe.job_id)
            if page is not None and page in self.members:
                self.members[page] = [i for i in self.members[page] if i != probe.job_id]
        else:
            self.left -= self._new_worth()[1]
            self.new_taken = True
            self.covered.update(self.reached)
            self.bonus.clear()


class Adaptive:
    """Greedy by expected changes found per request, with what is already covered removed."""

    def __init__(self, dwell: DwellTimes) -> None:
        self.dwell = dwell

    def rank(self, situation: Situation) -> list[Probe]:
        plan = _Greedy(situation, self.dwell)
        chosen: list[Probe] = []
        while plan.left > 0:
            probe = plan.best()
            if probe is None:
                break
            chosen.append(probe)
            plan.take(probe)
        return chosen


class RoundRobin:
    """The uniform policy: the listings a whole cycle makes (new jobs, then every page of
    every followed status), each in turn, the one made longest ago first."""

    def rank(self, situation: Situation) -> list[Probe]:
        s = situation
        order = [NEW] + [
            Probe("page", status, k)
            for status, chunks in s.layout.items()
            for k in range(len(chunks))
        ]
        never = -math.inf
        ranked = sorted(enumerate(order), key=lambda item: (s.probed.get(item[1], never), item[0]))
        return [probe for _, probe in ranked]
