"""Slack sink: Block Kit messages through an incoming webhook or the Web API (bot token).

Exactly one mode is configured:

- incoming webhook (``webhook_url``): one message per ``send``. A single transition gets the
  full layout; several get a grouped one (a header counting them by status or type, then one
  line per transition, all listed unless Slack's limits forbid, and then a "… and N more"
  marker that still names as many job ids as fit);
- bot (``token`` + ``channel``): one card per job, a channel message edited in place
  (``chat.update``) to show the job as it is now, whose ``ts`` is kept in the store's sink
  state so that cards survive restarts; every transition also replies in the card's thread
  (the history), and a reply saying the job failed is also broadcast to the channel.
  Transitions about no job (source health, digest, heartbeat) post top-level. With
  interactivity configured the card carries buttons (:mod:`.card`), whose clicks are
  checked by :mod:`.interaction` (the endpoint itself is :mod:`watcher.app.slack_actions`).

Everything shown comes from a foreign API and is treated as hostile: control and format
characters are stripped and ``&``, ``<``, ``>`` are escaped in every value, so that a job
suffix cannot mention ``<!channel>``, a user, or forge a link. Slack's limits (50 blocks,
3000 characters per section, 150 per header, 10 fields per section, 4000 for the ``text``
fallback) are respected by truncating with "…".

The webhook URL and the token are secrets: errors and logs show ``scheme://host/…`` only, and
response excerpts are scrubbed of them.

The package: ``mrkdwn`` (hostile values as Slack text, Slack's limits), ``meaning`` (what a
transition says: label, emoji, facts), ``blocks`` (the Block Kit layouts), ``card`` (a job's
card and its buttons), ``webapi`` (a Web API call and its verdict), ``interaction`` (a click:
signature, payload, who may act), ``sink`` (:class:`SlackSink`: its config, the webhook and
bot deliveries, cards and threads). It may import
:mod:`watcher.deliver`, :mod:`watcher.render` and below; never another sink.
"""

from __future__ import annotations

from watcher.sinks.slack.blocks import Formatter, Message
from watcher.sinks.slack.meaning import emoji, facts, label
from watcher.sinks.slack.mrkdwn import clean, escape, fit
from watcher.sinks.slack.sink import SlackSink

__all__ = ["Formatter", "Message", "SlackSink", "clean", "emoji", "escape", "facts", "fit", "label"]
