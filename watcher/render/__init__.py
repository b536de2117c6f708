"""Render: how a transition reads to a person (text hygiene, user templates, charts).

Shared by the sinks and the configuration check; pure, no I/O. ``text`` is the one place a
foreign value becomes shown text (clean, number, duration) or a number is parsed. May import
:mod:`watcher.abc` and :mod:`watcher.model`.
"""
