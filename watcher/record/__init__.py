"""Record: one poll cycle or alert evaluation in, snapshots and outbox rows committed in
ONE transaction out.

Owns: the poll cycle (``pipeline``) and time-rule alerting (``alerting``). Talks to the store
and to sources only through the protocols of :mod:`watcher.abc`. May import
:mod:`watcher.detect` and below; never a concrete source, sink or store.
"""
