"""Render: how a transition reads to a person (user templates, charts).

Shared by the sinks and the configuration check; pure, no I/O. May import
:mod:`watcher.abc` and :mod:`watcher.model`.
"""
