"""The model, below every stage: what a job, a status, a snapshot and a transition are.

Owns: parsed jobs and their events/checkpoints (``jobs``), each family's statuses and
terminal sets (``statuses``), the catalogue of transition types (``types``), snapshots and
job kinds (``snapshot``), transitions and their stable ids (``transitions``), secrets
(``secrets``), webhook signing rules (``webhooks``). Pure values, no I/O. Imports nothing of
watcher but :mod:`watcher.exceptions`.
"""
