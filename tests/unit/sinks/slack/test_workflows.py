"""Slack's layouts of Workflows executions: the title, fields and failure of every kind of
news, sub-workflows with their root, links per source, hostile values, bot threads."""

from __future__ import annotations

import re

import pytest

from tests.unit.sinks.slack.support import (
    CHANNEL,
    HOOK,
    MemoryState,
    Slack,
    envelope,
    texts,
    within_limits,
)
from tests.unit.sinks.workflow_cases import KINDS, hostile, workflow
from watcher.render.workflow_samples import EXECUTION_ID, PARENT_ID, ROOT_ID, RUN_ID
from watcher.sinks.slack import Formatter

WF_LINK = "https://console.example/{workflow_name}/executions/{job_id}?root={root_execution_id}"


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("workflow_running", ":arrow_forward: support-workflow RUNNING"),
        ("workflow_failed", ":x: support-workflow FAILED"),
        ("workflow_completed", ":white_check_mark: support-workflow COMPLETED"),
        ("workflow_timed_out", ":x: support-workflow TIMED_OUT"),
        ("workflow_retrying", ":repeat: support-workflow retrying (attempt 1 failed)"),
        ("continued_as_new", ":fast_forward: support-workflow continued as new"),
        (
            "activity_retrying",
            ":repeat: support-workflow activity charge_card retrying (attempt 2)",
        ),
        ("activity_failed", ":x: support-workflow activity charge_card failed (attempt 3)"),
        ("retry_storm", ":x: support-workflow retry storm"),
    ],
)
def test_title_names_the_workflow_and_what_happened(name: str, header: str) -> None:
    """Each kind's header: its emoji (failures :x:, retries :repeat:), workflow and news."""
    message = Formatter().single(workflow(name))
    assert header == message.blocks[0]["text"]["text"]


def test_failed_child_shows_its_fields_failure_and_root() -> None:
    """A failed sub-workflow: workflow, deployment, ids as code, its parent and root, the
    status, duration, attempt, and the failure as a code block."""
    message = Formatter().single(workflow("workflow_failed"))

    expected = [
        "*Workflow*\n`support-workflow`",
        "*Deployment*\n`prod`",
        f"*Execution*\n`{EXECUTION_ID}`",
        f"*Run*\n`{RUN_ID}`",
        f"*Sub-workflow*\nchild of `{PARENT_ID}` in root `{ROOT_ID}`",
        "*Status*\nRUNNING \u2192 FAILED",
        "*Duration*\n1m 2s",
        "*Attempt*\n2",
        "*Source*\nwf",
    ]
    assert expected == [field["text"] for field in message.blocks[1]["fields"]]
    summary = message.blocks[1]["text"]["text"]
    assert summary == (
        f"Execution `{EXECUTION_ID}` of `support-workflow` on *wf*: RUNNING \u2192 *FAILED* "
        f"(child of `{PARENT_ID}` in root `{ROOT_ID}`)"
    )
    assert "*Failure*\n```KeyError: 'customer'```" == message.blocks[2]["text"]["text"]
    assert f"in root `{ROOT_ID}`" in message.text


def test_an_unknown_status_is_news() -> None:
    """A status watcher does not know keeps its own word, with a neutral emoji."""
    paused = workflow("workflow_running", type="workflow.execution.paused", status="PAUSED", job={})
    message = Formatter().single(paused)
    assert ":information_source: support-workflow PAUSED" == message.blocks[0]["text"]["text"]


def test_retry_storm_and_activity_fields() -> None:
    """A retry storm names the activity, its retries and window, and the rule."""
    message = Formatter().single(workflow("retry_storm"))
    fields = [field["text"] for field in message.blocks[1]["fields"]]
    assert {"*Activity*\n`charge_card`", "*Retries*\n12 within 5m 0s", "*Rule*\n`retry_storm`"} <= (
        set(fields)
    )


def test_continued_as_new_names_the_next_run() -> None:
    """Continue-as-new shows the run that ended and the new one."""
    message = Formatter().single(workflow("continued_as_new"))
    fields = [field["text"] for field in message.blocks[1]["fields"]]
    assert "*New run*\n`0c5e8f21-3b6a-4d7e-8f90-1a2b3c4d5e6f`" in fields
    assert "*Status*\nRUNNING \u2192 CONTINUED_AS_NEW" in fields


_CODE = re.compile(r"```.*?```|`[^`]*`", re.DOTALL)
_OUR_LINK = re.compile(r"<https://[^|<>\s]+\|[^<>]+>")


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("grouped", [False, True], ids=["single", "grouped"])
def test_hostile_values_stay_inert(name: str, grouped: bool) -> None:
    """Markup, mentions, control characters and 10 kB names format nothing, mention
    nobody, and keep every Slack limit: foreign text is escaped, and in code spans."""
    formatter = Formatter(job_links={"wf": WF_LINK})
    batch = [hostile(name), hostile(name)] if grouped else [hostile(name)]
    message = formatter.grouped(batch) if grouped else formatter.single(batch[0])

    assert within_limits(message)  # type: ignore[arg-type]
    header = message.blocks[0]["text"]
    assert "plain_text" == header["type"]  # where nothing formats or mentions
    assert "<" not in header["text"]
    for text in [message.text, *texts(message)[2:]]:  # type: ignore[arg-type]
        outside = _OUR_LINK.sub("", _CODE.sub("", text))
        assert "<" not in outside and ">" not in outside
        assert "*bold*" not in outside and "_it_" not in outside
        assert not any(ord(ch) < 32 and ch != "\n" for ch in text)
        assert "\u202e" not in text and "\x1b" not in text
        assert len(text) < 4000


async def test_per_source_link_is_quoted(slack: Slack) -> None:
    """The source's template links the execution, with every value quoted."""
    sink = slack.webhook_sink(job_links={"wf": WF_LINK})
    await sink.send([workflow("workflow_failed", job={"workflow_name": "a b/c"})])

    [message] = slack.fake.webhook_messages(HOOK)
    url = f"https://console.example/a%20b%2Fc/executions/{EXECUTION_ID}?root={ROOT_ID}"
    assert f"*Link*\n<{url}|Open the execution>" == message.blocks[1]["fields"][-1]["text"]


async def test_sink_level_template_links_fine_tuning_jobs_only(slack: Slack) -> None:
    """The sink's own (deprecated) template links a fine-tuning job, not a batch job nor an
    execution; those take their source's template."""
    sink = slack.webhook_sink(job_url_template="https://console.example/ft/{job_id}")
    batch_job = envelope(2, type="batch.job.failed")
    for item in (envelope(1), batch_job, workflow("workflow_failed")):
        await sink.send([item])
        slack.clock.now += 1  # Slack's one message per second per webhook

    fine_tuning, batch, execution = slack.fake.webhook_messages(HOOK)
    assert "Open the job>" in fine_tuning.blocks[1]["fields"][-1]["text"]
    assert not any("Link" in t or "console.example" in t for t in texts(batch))
    assert not any("console.example" in t for t in texts(execution))


async def test_bot_threads_activities_with_their_execution_and_broadcasts_failures(
    slack: Slack,
) -> None:
    """An execution's activity facts reply in its card's thread; a failed activity is
    broadcast, a retry is not."""
    sink = slack.bot_sink(MemoryState())
    for name in ("workflow_running", "activity_retrying", "activity_failed"):
        await sink.send([workflow(name)])

    card, running, retry, failed = slack.fake.channel_messages(CHANNEL)
    expected = [(None, False), (card.ts, False), (card.ts, False), (card.ts, True)]
    assert expected == [(m.thread_ts, m.reply_broadcast) for m in (card, running, retry, failed)]
    assert [card.ts, card.ts] == [u.ts for u in slack.fake.updates]


def test_grouped_executions_are_counted_as_executions() -> None:
    """A group of failed executions is headed by their count."""
    batch = [workflow("workflow_failed", job_id=f"e{n}", job={"id": f"e{n}"}) for n in range(3)]
    message = Formatter().grouped(batch)
    assert ":x: 3 executions FAILED" == message.blocks[0]["text"]["text"]
