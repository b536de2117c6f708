"""Render: how a transition reads to a person (text hygiene, user templates, charts, what a
Workflows transition says, job links).

Shared by the sinks and the configuration check; pure, no I/O. ``text`` is the one place a
foreign value becomes shown text (clean, number, duration) or a number is parsed;
``workflows`` reads a Workflows transition once for every sink; ``links`` fills a source's
``job_url_template``. May import :mod:`watcher.abc` and :mod:`watcher.model`.
"""
