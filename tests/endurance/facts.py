"""What should have arrived (from the simulator's own record) against what did (from the
receiver's), as figures: lost, spurious, duplicates under the same or another webhook-id,
order per job."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from watcher.devtools.receiver import Received
from watcher.devtools.simulator import JobSpec, Simulator, random_scenario

# A fact about a job, whatever the wire: ("status", job, previous, status),
# ("checkpoint", job, step) or ("model", job, fine-tuned model).
Fact = tuple[Any, ...]

# Statuses the API does not document: a real change all the same (the contract: kept raw).
UNKNOWN_STATUSES = ("PAUSED", "ARCHIVING", "QUEUED_FOR_EVALUATION", "migrating")


def expected_facts(sim: Simulator) -> Counter[Fact]:
    """Every fine-tuning fact the simulator made true: each applied status change (as often
    as it was applied), each checkpoint, each fine-tuned model."""
    out: Counter[Fact] = Counter(
        ("status", e["job_id"], e["previous_status"], e["status"])
        for e in sim.log
        if e.get("kind", "fine_tuning") == "fine_tuning"
    )
    for job in sim.jobs.values():
        for checkpoint in job.checkpoints:
            out[("checkpoint", job.id, checkpoint["step_number"])] += 1
        if job.fine_tuned_model:
            out[("model", job.id, job.fine_tuned_model)] += 1
    return out


def fact_of(r: Received) -> Fact | None:
    """The fact a webhook tells, or None for one that is not about a job."""
    data = r.data if isinstance(r.data, dict) else {}
    job = data.get("job") if isinstance(data.get("job"), dict) else None
    if job is None or r.type is None:
        return None
    if data.get("status"):
        return ("status", job["id"], data.get("previous_status"), data["status"])
    if r.type.endswith(".checkpoint"):
        return ("checkpoint", job["id"], data["checkpoint"]["step_number"])
    if r.type.endswith(".model_ready"):
        return ("model", job["id"], data["fine_tuned_model"])
    return (r.type, job["id"])


@dataclass
class Tally:
    """The figures of one run."""

    expected: int = 0  # facts the simulator made true
    status_changes: int = 0  # of which status changes (the "transitions")
    delivered: int = 0  # distinct facts accepted by the receiver
    lost: list[Fact] = field(default_factory=list)
    spurious: list[Fact] = field(default_factory=list)
    other_ids: dict[Fact, set[str]] = field(default_factory=dict)  # one fact, several ids
    duplicates_same_id: int = 0  # accepted again under an id already accepted
    invalid: int = 0  # webhooks whose signature did not verify
    out_of_order: list[str] = field(default_factory=list)  # jobs whose chain broke

    def figures(self) -> dict[str, Any]:
        return {
            "facts expected": self.expected,
            "status changes": self.status_changes,
            "facts delivered": self.delivered,
            "lost": len(self.lost),
            "spurious": len(self.spurious),
            "duplicates, same webhook-id": self.duplicates_same_id,
            "duplicates, other webhook-id": len(self.other_ids),
            "invalid signatures": self.invalid,
            "jobs out of order": len(self.out_of_order),
        }


def tally(
    sim: Simulator, received: Sequence[Received], *, allowed_missing: Iterable[Fact] = ()
) -> Tally:
    """Compare; ``allowed_missing`` facts may be absent (dead letters, by design)."""
    wanted = expected_facts(sim)
    ids: dict[Fact, set[str]] = {}
    accepted = [r for r in received if r.accepted and r.id]
    for r in accepted:
        fact = fact_of(r)
        if fact is not None:
            ids.setdefault(fact, set()).add(str(r.id))
    excused = set(allowed_missing)
    t = Tally(
        expected=sum(wanted.values()),
        status_changes=sum(n for f, n in wanted.items() if f[0] == "status"),
        delivered=len(ids),
    )
    t.lost = [f for f in wanted if f not in ids and f not in excused]
    t.spurious = [f for f in ids if f not in wanted]
    # A fact applied n times (a job back in a status it left) has n ids of its own.
    t.other_ids = {f: i for f, i in ids.items() if len(i) > wanted.get(f, 1)}
    t.duplicates_same_id = len(accepted) - len({r.id for r in accepted})
    t.invalid = sum(not r.valid for r in received)
    t.out_of_order = out_of_order(sim, accepted)
    return t


def out_of_order(sim: Simulator, accepted: Sequence[Received]) -> list[str]:
    """Jobs whose status changes arrived (first delivery of each id, in arrival order) out
    of the order the simulator applied them; gaps (dead letters) are allowed."""
    applied: dict[str, list[tuple[str | None, str]]] = {}
    for e in sim.log:
        if e.get("kind", "fine_tuning") == "fine_tuning":
            applied.setdefault(e["job_id"], []).append((e["previous_status"], e["status"]))
    seen: set[str] = set()
    arrived: dict[str, list[tuple[str | None, str]]] = {}
    for r in sorted(accepted, key=lambda r: r.received_at):
        fact = fact_of(r)
        if fact is None or fact[0] != "status" or r.id in seen:
            continue
        seen.add(str(r.id))
        arrived.setdefault(fact[1], []).append((fact[2], fact[3]))
    broken = []
    for job_id, steps in arrived.items():
        position = 0
        script = applied.get(job_id, [])
        for step in steps:
            try:
                position = script.index(step, position) + 1
            except ValueError:
                broken.append(job_id)
                break
    return broken


def scenario(
    seed: int,
    transitions: int,
    *,
    within: float,
    step_gap: tuple[float, float],
    unknown_share: float = 0.0,
) -> list[JobSpec]:
    """Varied fine-tuning lifecycles (the simulator's seeded random ones) created over
    ``within`` simulated seconds, until their status changes (creation included) reach
    ``transitions``; ``unknown_share`` of those changes go to undocumented statuses (a job
    pauses, then resumes where its script goes next)."""
    jobs: list[JobSpec] = []
    count = 0
    pool = random_scenario(seed, max(8, transitions), start_within=within, step_gap=step_gap)
    for spec in pool:
        if count >= transitions:
            break
        jobs.append(spec)
        count += 1 + len(spec.steps)
    unknown = round(unknown_share * count)
    if unknown_share > 0:
        unknown = max(1, unknown)
    candidates = [i for i, spec in enumerate(jobs) if len(spec.steps) >= 2]
    for n, index in zip(range(unknown), itertools.cycle(candidates), strict=False):
        spec = jobs[index]
        steps = list(spec.steps)
        # Between two steps that are not the end: the job goes on after the pause.
        at = 1 + (n + index) % (len(steps) - 1)
        when = round((steps[at - 1][1] + steps[at][1]) / 2, 2)
        steps.insert(at, (UNKNOWN_STATUSES[n % len(UNKNOWN_STATUSES)], when))
        jobs[index] = replace(spec, steps=tuple(steps))
    return jobs


def settled(sim: Simulator) -> bool:
    """Every scripted step was applied (stale ones included)."""
    sim.advance()
    return sim.pending() == 0


def all_arrived(
    sim: Simulator, received: Sequence[Received], *, allowed_missing: Iterable[Fact] = ()
) -> bool:
    got = {fact_of(r) for r in received if r.accepted}
    excused = set(allowed_missing)
    return all(f in got or f in excused for f in expected_facts(sim))


def missing(sim: Simulator, received: Sequence[Received]) -> list[Fact]:
    got = {fact_of(r) for r in received if r.accepted}
    return [f for f in expected_facts(sim) if f not in got]
