"""Record: one poll cycle or alert evaluation in, snapshots and outbox rows committed in
ONE transaction out.

Owns: the one recorder every producer of transitions uses (``recorder``: route, commit,
count, wake the dispatcher), the poll cycle (``pipeline``) and time-rule alerting
(``alerting``). Counts through a small protocol (``RecordMetrics``), never importing
:mod:`watcher.app`. Talks to the store and to sources only through the protocols of
:mod:`watcher.abc`. May import
:mod:`watcher.detect` and below; never a concrete source, sink or store.
"""
