"""Detect: turn what a source saw into transitions, and decide where they go. Pure: no I/O,
no clock (``now`` is passed in).

Owns: the diff of a snapshot against a job (``diff``), time rules (``rules``), routing and
mute windows (``routing``), digests and heartbeats (``digest``). May import
:mod:`watcher.model`, :mod:`watcher.abc`, :mod:`watcher.config` and below.
"""
