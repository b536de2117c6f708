"""Test doubles that speak a real protocol on loopback (e.g. a fake Slack Web API)."""
