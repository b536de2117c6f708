"""The application: wiring and lifecycle only.

Owns: the daemon that wires the parts (``daemon``), the schedule, the polls as this replica
runs them and the watchdog (``scheduling``), the chores beside the polls: housekeeping,
digest, heartbeat, stats (``chores``), signals and config reloads (``reload``), health,
readiness and their endpoints (``health``), Prometheus metrics (``metrics``), the HTTP
listener (``httpserver``), sd_notify (``sdnotify``), logging setup (``logging``) and
coordination between replicas (``coordination``). Imports every stage; no stage imports it.
"""
