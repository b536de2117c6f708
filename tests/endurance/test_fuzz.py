"""Fuzz: hypothesis mutates real job payloads of both families (types swapped, fields
removed, nulls, huge strings, deep nesting, odd text) and feeds them through each source's
real path: the HTTP answer decoded by the API client, the listing and detail parsing, the
diff, and the JSON the store and the sinks make of its results. Nothing raises but the
source errors the pipeline reports, and every item the parser rejects is logged once."""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from watcher.abc import PollContext, PollResult
from watcher.detect.diff import diff
from watcher.exceptions import SourceError
from watcher.model.snapshot import Cursor, Snapshot

from .fuzz_api import (
    FAMILIES,
    Api,
    Entry,
    Family,
    Mutated,
    entry,
    in_fresh_thread,
    mutations,
    nested,
    verdict,
)
from .scale import current

pytestmark = pytest.mark.endurance

SCALE = current()
# Nesting every JSON library reads (most cap around 500 to 1,000 levels): the parser and
# the diff must take it in their stride.
SHALLOW = 200
# Nesting past what Python's own decoder and recursive walks survive: see the xfail below.
DEEP = 3000

FUZZ = settings(
    max_examples=SCALE.fuzz_examples,
    # The short run gates every commit: the same examples each time (a failure there is
    # the commit's). The long run (make endurance) explores new ones on every run.
    derandomize=SCALE.name == "short",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Outcome:
    result: PollResult | None
    error: SourceError | None
    logs: list[dict[str, Any]]
    served: Mapping[str, int]
    transitions: int


@functools.cache
def clean_snapshots(family: Family) -> dict[str, Snapshot]:
    """What watcher knows of the jobs from their correct renderings: the previous state for
    the cycle that follows them."""

    async def known() -> dict[str, Snapshot]:
        async with httpx.AsyncClient() as client:
            source = family.source(client)
            out = {}
            for payload in family.payloads():
                job = family.parse(json.loads(json.dumps(payload)))
                out[job.id], _ = diff(None, job, source=source.name, kind=source.kind)
            return out

    return in_fresh_thread(lambda: anyio.run(known))


async def cycle(family: Family, entries: list[Entry], previous: dict[str, Snapshot]) -> Outcome:
    """One poll of the family's source over ``entries``, then the diff of each job it
    returns and the serializations the pipeline makes of the results."""
    api = Api(family, entries)
    now = time.time()
    async with httpx.AsyncClient(transport=httpx.MockTransport(api.handler)) as client:
        source = family.source(client)
        if previous:
            newest = max(e.created_at for e in entries)
            cursor = Cursor(baseline_done=True, watermark=newest, last_full_sync=now)
        else:
            cursor = Cursor(baseline_done=True)  # first sight: a full listing
        active = {k: s for k, s in previous.items() if not s.terminal}

        async def lookup(ids: Sequence[str]) -> Mapping[str, Snapshot]:
            return {i: previous[i] for i in ids if i in previous}

        result: PollResult | None = None
        error: SourceError | None = None
        transitions = 0
        with capture_logs() as logs:
            try:
                result = await source.poll(PollContext(cursor, active, now, lookup))
            except SourceError as exc:
                error = exc
            for job in result.jobs if result else []:
                snapshot, found = diff(previous.get(job.id), job, source="s", kind=source.kind)
                json.dumps(snapshot.to_json())  # the store's snapshot column
                for t in found:
                    json.dumps(t.to_json())  # the store's outbox row
                    json.dumps(t.payload(now))  # the webhook body
                transitions += len(found)
    return Outcome(result, error, logs, api.served, transitions)


def check(
    family: Family,
    entries: list[Entry],
    outcome: Outcome,
    *,
    first_sight: bool,
    once: bool = False,
) -> None:
    """No error, whatever the nesting: each rejected or undecodable item logged (``once``:
    exactly once), at warning level; on first sight, every readable job comes through."""
    served = [e for e in entries if outcome.served.get(e.true_id)]
    verdicts = {e.true_id: in_fresh_thread(lambda e=e: verdict(family, e.listed)) for e in served}
    # Listed fine, but its detail (events, checkpoints) too deep: skipped if it is fetched.
    deep_detail = [
        e.true_id
        for e in served
        if verdicts[e.true_id] == "ok" and verdict(family, e.detailed) == "undecodable"
    ]
    verdicts.update(dict.fromkeys(deep_detail, "undecodable detail"))
    assert outcome.error is None, f"{outcome.error!r} for {verdicts}"  # one item costs itself
    assert outcome.result is not None
    rejected = [i for i, v in verdicts.items() if v in ("rejected", "undecodable")]
    skipped = [e for e in outcome.logs if e["event"] == "malformed_job_skipped"]
    assert all("warning" == e["log_level"] for e in skipped)
    if once:
        # Once per cycle for every item watcher can tell apart: never twice under one id
        # (an item may show in two listings and in its detail). A listing item without a
        # readable id cannot be matched to its job's detail: each is reported.
        # Logs naming a job's real id: at most one per job (listing copies and its detail
        # are one item). An id the mutation invented names another item for watcher.
        named = [e["job_id"] for e in skipped if e.get("job_id") in verdicts]
        assert len(skipped) >= len(rejected), (verdicts, skipped)
        assert len(set(named)) == len(named), (verdicts, skipped)
    else:
        assert len(skipped) >= len(rejected), (verdicts, skipped)
        assert not skipped or rejected or deep_detail, skipped
    if first_sight:  # one bad item costs only itself: every other job comes through
        returned = {job.id for job in outcome.result.jobs}
        readable = [e for e in served if verdicts[e.true_id] == "ok"]
        assert [] == [e.rendered_id for e in readable if e.rendered_id not in returned]


@dataclass(frozen=True)
class Case:
    """A family's jobs, some of them mutated (by index)."""

    family: int  # index in FAMILIES
    mutated: Mapping[int, Mutated]

    def entries(self) -> list[Entry]:
        family = FAMILIES[self.family]
        return [entry(family, p, self.mutated.get(i)) for i, p in enumerate(family.payloads())]


@st.composite
def cases(draw: st.DrawFn, max_depth: int, *, deep: bool = False) -> Case:
    """One family's jobs, one to three of them mutated."""
    index = draw(st.sampled_from(range(len(FAMILIES))))
    payloads = FAMILIES[index].payloads()
    chosen = draw(st.sets(st.integers(0, len(payloads) - 1), min_size=1, max_size=3))
    return Case(
        index, {i: draw(mutations(payloads[i], max_depth, deep=deep)) for i in sorted(chosen)}
    )


def run(case: Case, *, once: bool = False) -> None:
    """First sight of the jobs, then a cycle that follows them from their clean state."""
    family, entries = FAMILIES[case.family], case.entries()
    outcome = in_fresh_thread(lambda: anyio.run(cycle, family, entries, {}))
    check(family, entries, outcome, first_sight=True, once=once)
    outcome = in_fresh_thread(lambda: anyio.run(cycle, family, entries, clean_snapshots(family)))
    check(family, entries, outcome, first_sight=False, once=once)


def _mutated(family: int, index: int, edit: Callable[[dict[str, Any]], Any], **deep: str) -> Case:
    """An explicit case: job ``index`` of a family, edited."""
    payload = copy.deepcopy(FAMILIES[family].payloads()[index])
    return Case(family, {index: Mutated(edit(payload), deep=dict(deep), applied=["explicit"])})


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(payload: dict[str, Any]) -> Any:
        payload[key] = value
        return payload

    return edit


DEEP_HERE = "\x00deep\x00"
FINE_TUNING, BATCH = 0, 1


@FUZZ
@given(case=cases(SHALLOW))
def test_mutated_payloads_never_crash(case: Case) -> None:
    """Mutated payloads of both families (nesting up to SHALLOW levels): the poll, the diff
    and the serializations raise nothing, each rejected item is logged at warning level,
    and the other jobs of the answer come through."""
    run(case)


@FUZZ
@example(case=_mutated(FINE_TUNING, 0, lambda payload: None))
@given(case=cases(SHALLOW))
def test_each_rejected_item_is_logged_once_per_cycle(case: Case) -> None:
    """A rejected item leads to one malformed_job_skipped event per poll cycle, whether it
    shows in one listing or several and whether its detail is asked for too (an item
    without a readable id cannot be matched to its detail: both are reported)."""
    run(case, once=True)


@FUZZ
@example(
    case=_mutated(FINE_TUNING, 0, _set("metadata", DEEP_HERE), **{DEEP_HERE: nested(600, "dict")})
)
@given(case=cases(DEEP, deep=True))
def test_deeply_nested_payloads_never_crash(case: Case) -> None:
    """Nesting up to DEEP levels anywhere in a job: taken in, or that job alone skipped as
    malformed (logged), never an error of the cycle nor an exception of another kind."""
    run(case)


@pytest.mark.parametrize("depth", [980, 1500, 20_000])
@pytest.mark.parametrize("family", [FINE_TUNING, BATCH], ids=["fine-tuning", "batch"])
def test_an_item_too_deep_to_decode_costs_only_itself(family: int, depth: int) -> None:
    """One item nested past what watcher decodes (980 to 20,000 levels, on any Python):
    that job is skipped and logged by its id, every other job of the answer comes through
    and the cycle succeeds."""
    case = _mutated(family, 0, _set("metadata", DEEP_HERE), **{DEEP_HERE: nested(depth, "list")})
    entries = case.entries()
    outcome = in_fresh_thread(lambda: anyio.run(cycle, FAMILIES[family], entries, {}))
    assert outcome.error is None and outcome.result is not None
    returned = {job.id for job in outcome.result.jobs}
    assert {e.true_id for e in entries[1:]} == returned
    skipped = [e for e in outcome.logs if e["event"] == "malformed_job_skipped"]
    assert [entries[0].true_id] == [e.get("job_id") for e in skipped]


@pytest.mark.parametrize("family", [FINE_TUNING, BATCH], ids=["fine-tuning", "batch"])
def test_a_rejected_item_is_named_in_its_log_event(family: int) -> None:
    """The malformed_job_skipped event of an item with a readable id carries it as
    ``job_id``: the operator learns which job the API renders badly."""
    case = _mutated(family, 0, lambda payload: {**payload, "status": None})
    entries = case.entries()
    outcome = in_fresh_thread(lambda: anyio.run(cycle, FAMILIES[family], entries, {}))
    skipped = [e for e in outcome.logs if e["event"] == "malformed_job_skipped"]
    assert [entries[0].true_id] == [e.get("job_id") for e in skipped]
