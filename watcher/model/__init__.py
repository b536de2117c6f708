"""The model, below every stage: what a job, a status, a snapshot and a transition are.

Owns: parsed jobs and their events/checkpoints (``jobs``), transitions and their stable ids
(``transitions``), secrets (``secrets``). Pure values, no I/O. Imports nothing of watcher but
:mod:`watcher.exceptions`.
"""
