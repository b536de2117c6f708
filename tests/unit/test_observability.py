"""The observability kit: alerting rules, the Grafana dashboard, the ServiceMonitor and the
Type=notify-reload drop-in, checked against what the daemon really exposes.

``promtool`` (Debian's ``prometheus`` package; ``make promtool`` puts it in the venv) checks
and unit-tests the rules; where it cannot be had, those two tests are skipped and say so.
Every metric the rules and the dashboard name must be one the daemon's registry (what
``/metrics`` encodes) exposes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import REPO
from tests.unit.test_deploy import KUSTOMIZATIONS, needs_kubectl, render
from watcher.app.metrics import Metrics

PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yaml"
RULE_TESTS = PROMETHEUS / "alerts.test.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "watcher.json"
DROP_IN = REPO / "deploy" / "systemd" / "notify-reload.conf"
UNIT = REPO / "deploy" / "systemd" / "watcher.service"
PROMTOOL = shutil.which("promtool") or shutil.which(
    "promtool", path=str(Path(sys.executable).parent)
)
# What Prometheus itself adds to every target.
SYNTHETIC = {"up"}
# A metric name as the kit writes them (the daemon's own, the process collector's, and up).
METRIC = re.compile(r"\b(?:watcher|process)_[a-z0-9_]+\b|\bup\b(?=\s*\{)")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian: apt-get install prometheus, or `make promtool`)",
)


def exposed() -> set[str]:
    """Every sample name the daemon's registry can expose (``_total``, ``_bucket``, …),
    labelled families included even before their first sample."""
    metrics = Metrics(["batch"], sinks={})
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "info": ("_info",),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


# --- the rules -------------------------------------------------------------------------------


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, check=False, timeout=60, cwd=PROMETHEUS
    )


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "rules", RULES.name)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in result.stdout


@needs_promtool
def test_rules_pass_their_unit_tests() -> None:
    """Each alert fires on its case and stays quiet on the near miss (alerts.test.yaml)."""
    result = run_promtool("test", "rules", RULE_TESTS.name)
    assert 0 == result.returncode, result.stdout + result.stderr


@needs_promtool
def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The unit tests are not vacuous: with a threshold moved, promtool reports a failure."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    moved = RULES.read_text(encoding="utf-8").replace("> 900\n", "> 1900\n")
    assert moved != RULES.read_text(encoding="utf-8")
    (tmp_path / RULES.name).write_text(moved, encoding="utf-8")
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert (1, True) == (
        result.returncode,
        "WatcherSourceUnreachable" in result.stdout + result.stderr,
    )


def test_every_alert_is_unit_tested_and_described() -> None:
    """Each alert has a severity, a summary and a description, and a promtool case."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert [] == [
        rule["alert"]
        for rule in rules
        if rule["labels"].get("severity") not in ("warning", "critical")
        or not {"summary", "description"} <= set(rule["annotations"])
    ]
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set() == set(rule_expressions()) - fired


def test_the_kit_names_only_metrics_the_daemon_exposes() -> None:
    """Every metric in the rules and in the dashboard's queries is one /metrics exposes."""
    available = exposed() | SYNTHETIC
    assert {"watcher_polls_total", "watcher_outbox_pending", "watcher_build_info"} <= available
    named = {
        source: {m for expr in exprs for m in METRIC.findall(expr)}
        for source, exprs in (
            ("alerts.yaml", list(rule_expressions().values())),
            ("watcher.json", dashboard_expressions()),
        )
    }
    assert all(named.values())
    assert {} == {
        source: sorted(names - available) for source, names in named.items() if names - available
    }
    assert "watcher_config_last_reload_successful" in named["alerts.yaml"]  # reload failed


def test_the_name_check_catches_a_typo() -> None:
    """The check above is not vacuous: a misspelt metric is not in the exposed set."""
    assert "watcher_poll_total" not in exposed()
    assert ["watcher_poll_total"] == METRIC.findall('rate(watcher_poll_total{job="w"}[5m])')


# --- the dashboard ----------------------------------------------------------------------------


def test_dashboard_is_importable() -> None:
    """A data-source variable (no hard-coded data source), a job variable every query
    filters on, unique panel ids, and panels that do not overlap."""
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert "prometheus" == variables["datasource"]["query"]
    assert "job" in variables
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    queries = [p for p in panels if p["type"] != "row"]
    assert [] == [p["title"] for p in queries if p["datasource"]["uid"] != "${datasource}"]
    assert [] == [e for e in dashboard_expressions() if 'job=~"$job"' not in e]
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        mine = {
            (grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])
        }
        assert set() == cells & mine, panel["title"]
        assert grid["x"] + grid["w"] <= 24
        cells |= mine


# --- Kubernetes and systemd ------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_service_monitor_scrapes_the_service_port(kustomization: str) -> None:
    """The ServiceMonitor selects the Service `watcher` (so the job is "watcher", as the
    rules expect) and scrapes its named port at /metrics, in the same namespace."""
    objects = render(kustomization)
    (monitor,) = [obj for obj in objects if obj["kind"] == "ServiceMonitor"]
    (service,) = [obj for obj in objects if obj["kind"] == "Service"]
    assert "monitoring.coreos.com/v1" == monitor["apiVersion"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert "watcher" == service["metadata"]["name"]
    assert monitor["metadata"].get("namespace") == service["metadata"].get("namespace")
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert [("http", "/metrics")] == [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]]
    assert "http" in ports
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}


def systemd_version() -> int:
    found = shutil.which("systemctl") or shutil.which("systemd-analyze")
    if found is None:
        return 0
    shown = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"systemd (\d+)", shown.stdout)
    return int(match[1]) if match else 0


def test_notify_reload_drop_in() -> None:
    """The drop-in switches the unit to Type=notify-reload and clears ExecReload (systemd
    sends the SIGHUP itself); the daemon's side (RELOADING=1 with MONOTONIC_USEC=, then
    READY=1) is tested end to end in tests/e2e."""
    lines = [
        line
        for line in DROP_IN.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert ["[Service]", "Type=notify-reload", "ExecReload="] == lines
    assert "Type=notify\n" in UNIT.read_text(encoding="utf-8")


@pytest.mark.skipif(systemd_version() < 253, reason="systemd < 253 knows no notify-reload")
def test_notify_reload_unit_verifies(tmp_path: Path) -> None:
    """With systemd 253 or newer, the unit as the drop-in makes it passes verify."""
    watcher_bin = Path(sys.executable).parent / "watcher"
    text = UNIT.read_text(encoding="utf-8").replace("/usr/local/bin/watcher", str(watcher_bin))
    text = text.replace("Type=notify\n", "Type=notify-reload\n")
    text = re.sub(r"^ExecReload=.*\n", "", text, flags=re.M)
    (tmp_path / "watcher.service").write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "watcher.service")],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert ("", 0) == (result.stderr, result.returncode)
