"""The application: wiring and lifecycle only.

Owns: the daemon (``daemon``), health and readiness (``health``), Prometheus metrics
(``metrics``), the HTTP listener (``httpserver``), sd_notify (``sdnotify``), logging setup
(``logging``) and coordination between replicas (``coordination``). Imports every stage;
no stage imports it.
"""
