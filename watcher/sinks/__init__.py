"""Sinks: one module per kind (webhook, console, …); they never import each other."""
