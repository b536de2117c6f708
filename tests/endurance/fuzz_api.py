"""The fuzz's raw material: real job payloads (the simulator's renderings of both families),
hypothesis mutations of them, and an in-memory API (``httpx.MockTransport``) that serves the
mutated renderings while filtering and paging on each job's true values, as the real API
would when only its serialization of a job is off."""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx2 as httpx
from hypothesis import strategies as st

from watcher.config import BatchSourceConfig, FineTuningSourceConfig
from watcher.devtools.simulator import BatchSpec, JobSpec, Simulator
from watcher.model.jobs import Job, MalformedItem
from watcher.model.secrets import Secret
from watcher.sources.batch import BatchSource, parse_batch_job
from watcher.sources.decoding import Refused, decode
from watcher.sources.fine_tuning import FineTuningSource, parse_job
from watcher.sources.listing import ListingSource

T = TypeVar("T")
KEY = "sk-fuzz-key-123"
BASE = "http://api.test"
HUGE = 250_000  # characters: far past any column size, and a page stays under MAX_BODY


@dataclass(frozen=True)
class Family:
    """One job family: where its jobs are listed, how its source is built and parses."""

    name: str
    path: str
    payloads: Callable[[], tuple[dict[str, Any], ...]]
    parse: Callable[[Any], Job]
    source: Callable[[httpx.AsyncClient], ListingSource]
    list_item: Callable[[Any], Any]  # what the listing shows of a job


@functools.cache
def _fine_tuning_payloads() -> tuple[dict[str, Any], ...]:
    sim = Simulator(seed=1)
    statuses = ("QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "SUCCESS", "FAILED", "CANCELLED")
    return tuple(
        sim.create(
            JobSpec(status=s, checkpoints=2, wandb_project="p", repository="o/r", frozen=True)
        ).detailed()
        for s in statuses
    )


@functools.cache
def _batch_payloads() -> tuple[dict[str, Any], ...]:
    sim = Simulator(seed=1)
    statuses = ("QUEUED", "RUNNING", "SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED")
    return tuple(
        sim.create_batch(
            BatchSpec(status=s, failure_rate=0.3, errors=("bad input",), frozen=True)
        ).to_json()
        for s in statuses
    )


def _fine_tuning_source(client: httpx.AsyncClient) -> ListingSource:
    config = FineTuningSourceConfig(
        name="ft", kind="mistral-fine-tuning", base_url=BASE, api_key=Secret(KEY), max_retries=0
    )
    return FineTuningSource(config, client)


def _batch_source(client: httpx.AsyncClient) -> ListingSource:
    config = BatchSourceConfig(
        name="batch", kind="mistral-batch", base_url=BASE, api_key=Secret(KEY), max_retries=0
    )
    return BatchSource(config, client)


def _summary(job: Any) -> Any:
    if not isinstance(job, dict):
        return job
    return {k: v for k, v in job.items() if k not in ("events", "checkpoints")}


FAMILIES = (
    Family(
        "fine-tuning",
        "/v1/fine_tuning/jobs",
        _fine_tuning_payloads,
        parse_job,
        _fine_tuning_source,
        _summary,
    ),
    Family("batch", "/v1/batch/jobs", _batch_payloads, parse_batch_job, _batch_source, lambda j: j),
)


# --- mutations -------------------------------------------------------------------------------

# What replaces a value of another type. NaN and Infinity are not JSON, yet Python's and
# many other encoders write them: a foreign API can send them.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)
ODD_TEXT = st.sampled_from(
    ["", " ", "\x00", "\ud800", "\u202e", "a\nb", "🚀" * 3, "NaN", "-1", "1e400", "0x10"]
)
OPS = ("remove", "null", "swap", "huge", "deep", "odd")


@dataclass
class Mutated:
    """A payload after its mutations; deep values are placeholders until encoded (a nesting
    deeper than the encoder's recursion limit is only writable as text)."""

    value: Any
    deep: dict[str, str] = field(default_factory=dict)  # placeholder -> JSON text
    applied: list[str] = field(default_factory=list)  # what was done, for the failure report

    def encode(self, value: Any | None = None) -> str:
        text = json.dumps(self.value if value is None else value, allow_nan=True)
        for placeholder, nested in self.deep.items():
            text = text.replace(json.dumps(placeholder), nested)
        return text

    @property
    def depth(self) -> int:
        return max((text.count("[") + text.count("{") for text in self.deep.values()), default=0)


def _slots(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value, the value itself first."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _slots(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _slots(child, (*path, index))


def nested(depth: int, kind: str) -> str:
    """JSON text of a value ``depth`` lists or objects deep."""
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def mutations(
    draw: st.DrawFn, payload: dict[str, Any], max_depth: int, *, deep: bool = False
) -> Mutated:
    """``payload`` with 1 to 4 mutations at places hypothesis picks (top-level fields, and
    inside events, checkpoints, metrics, metadata, errors…); ``deep``: the last one nests."""
    out = Mutated(copy.deepcopy(payload))
    count = draw(st.integers(1, 4))
    for n in range(count):
        path = draw(st.sampled_from(list(_slots(out.value))))
        op = "deep" if deep and n == count - 1 else draw(st.sampled_from(OPS))
        new: Any
        if op == "remove":
            if not path:
                continue
            new = _REMOVED
        elif op == "null":
            new = None
        elif op == "swap":
            new = draw(ANY_VALUE)
        elif op == "huge":
            new = draw(st.sampled_from("x🚀\u00e9 ")) * draw(st.integers(10_000, HUGE))
        elif op == "odd":
            new = draw(ODD_TEXT)
        else:
            placeholder = f"\x00deep-{n}\x00"
            depth = draw(st.integers(max_depth // 10 if deep else 2, max_depth))
            out.deep[placeholder] = nested(depth, draw(st.sampled_from(["list", "dict"])))
            new = placeholder
        out.applied.append(f"{op} at {list(path)}")
        out.value = _put(out.value, path, new)
    return out


_REMOVED = object()


def _put(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if rest:
        value[head] = _put(value[head], rest, new)
    elif new is _REMOVED:
        del value[head]
    else:
        value[head] = new
    return value


# --- the API ---------------------------------------------------------------------------------


@dataclass
class Entry:
    """One job of the in-memory API: its true values, and how the API renders it."""

    true_id: str
    status: str
    created_at: int
    listed: str  # JSON text of its list item
    detailed: str  # JSON text of its detail
    rendered_id: Any  # the id its rendering shows (maybe mutated)
    depth: int = 0  # the deepest nesting a mutation put in it


def entry(family: Family, payload: dict[str, Any], mutated: Mutated | None = None) -> Entry:
    shown = mutated or Mutated(payload)
    value = shown.value
    return Entry(
        true_id=payload["id"],
        status=payload["status"],
        created_at=payload["created_at"],
        listed=shown.encode(family.list_item(value)),
        detailed=shown.encode(),
        rendered_id=value.get("id") if isinstance(value, dict) else None,
        depth=shown.depth,
    )


class Api:
    """Listings filtered by true status and ``created_after``, newest first, paged from
    ``total``; details by the rendered id (else the true one). Records what it served."""

    def __init__(self, family: Family, entries: list[Entry]) -> None:
        self.family = family
        self.entries = entries
        self.served: Counter[str] = Counter()  # true id -> times served (list or detail)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.family.path:
            return self._listing(request)
        wanted = unquote(request.url.raw_path.decode().split("?")[0].rsplit("/", 1)[1])
        found = next((e for e in self.entries if e.rendered_id == wanted), None)
        found = found or next((e for e in self.entries if e.true_id == wanted), None)
        if found is None:
            return httpx.Response(404, json={"detail": "No job matches the given query."})
        self.served[found.true_id] += 1
        return httpx.Response(200, text=found.detailed, headers=_JSON)

    def _listing(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        items = sorted(self.entries, key=lambda e: (-e.created_at, e.true_id))
        statuses = params.get_list("status")
        if statuses:
            items = [e for e in items if e.status in statuses]
        if "created_after" in params:
            bound = datetime.fromisoformat(params["created_after"]).timestamp()
            items = [e for e in items if e.created_at >= bound]
        page, size = int(params.get("page", 0)), int(params.get("page_size", 100))
        shown = items[page * size : (page + 1) * size]
        for e in shown:
            self.served[e.true_id] += 1
        data = ",".join(e.listed for e in shown)
        body = f'{{"object": "list", "total": {len(items)}, "data": [{data}]}}'
        return httpx.Response(200, text=body, headers=_JSON)


_JSON = {"content-type": "application/json"}


def in_fresh_thread(function: Callable[[], T]) -> T:
    """``function()`` in a new thread: Python counts recursion per thread, so the depth a
    nested answer can reach does not depend on how deep pytest and hypothesis already are
    (a daemon polls from a shallow stack too)."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, function()))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def verdict(family: Family, text: str) -> str:
    """How the parser takes one rendering: ``ok``, ``rejected`` (MalformedItem) or
    ``undecodable`` (nested deeper than watcher decodes, whatever the interpreter's
    recursion limit). Anything else it raises is a bug and propagates."""
    try:
        raw = decode(text)
    except Refused:
        return "undecodable"
    try:
        family.parse(raw)
    except MalformedItem:
        return "rejected"
    return "ok"
