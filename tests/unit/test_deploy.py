"""Deployment files: the systemd unit, the Kubernetes manifests and the Dockerfile.

Nothing here starts systemd, a cluster or Docker. The unit is checked with
``systemd-analyze verify`` and ``security --offline``; the manifests are rendered with
``kubectl kustomize`` and validated against the Kubernetes JSON schemas shipped by
``kubernetes-validate``; the Dockerfile (no Docker engine here) is parsed and checked
instruction by instruction. Tests needing ``systemd-analyze`` or ``kubectl`` are skipped
where those tools are not installed.
"""

from __future__ import annotations

import base64
import copy
import functools
import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests import REPO
from watcher.app.httpserver import MAX_CONNECTIONS
from watcher.config import Config, validate_config
from watcher.exceptions import ConfigError

DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "watcher.service"
SYSTEMD_CONFIG = DEPLOY / "systemd" / "config.yaml"
KUSTOMIZE = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
# The console script installed beside the interpreter running the tests (the venv's).
WATCHER_BIN = Path(sys.executable).parent / "watcher"
# The oldest Kubernetes still commonly run, and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
KUSTOMIZATIONS = ("base", "overlays/sqlite", "overlays/postgres")
# Prometheus Operator objects (ServiceMonitor): custom resources kubernetes-validate has no
# schema for.
OPERATOR_GROUPS = ("monitoring.coreos.com/",)
UID = 10001
HTTP_PORT = 9464

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing")


# --- systemd ------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value given, in order (systemd keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart names the venv's ``watcher`` (absolute).

    ``systemd-analyze verify`` checks that the ExecStart binary exists, and
    /usr/local/bin/watcher does not on a development machine. Only that one path is
    rewritten; everything else is verified as shipped.
    """
    text = UNIT.read_text(encoding="utf-8")
    shipped = "ExecStart=/usr/local/bin/watcher run -c /etc/watcher/config.yaml\n"
    assert 1 == text.count(shipped)
    assert WATCHER_BIN.is_file()
    copy_path = tmp_path / "watcher.service"
    copy_path.write_text(
        text.replace(shipped, f"ExecStart={WATCHER_BIN} run -c /etc/watcher/config.yaml\n"),
        encoding="utf-8",
    )
    return copy_path


@needs_systemd_analyze
def test_unit_verifies_without_a_complaint(verifiable_unit: Path) -> None:
    """``systemd-analyze verify`` reports nothing at all (it exits 0 even on unknown keys)."""
    result = subprocess.run(
        ["systemd-analyze", "verify", str(verifiable_unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert ("", 0) == (result.stderr, result.returncode)


@needs_systemd_analyze
def test_unit_verify_would_report_a_broken_key(verifiable_unit: Path) -> None:
    """The verify check above is not vacuous: a misspelt key shows up on stderr."""
    broken = verifiable_unit.read_text(encoding="utf-8").replace(
        "ProtectHome=yes", "ProtectHomes=yes"
    )
    verifiable_unit.write_text(broken, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(verifiable_unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert "Unknown key 'ProtectHomes'" in result.stderr


@needs_systemd_analyze
def test_unit_exposure_is_low(verifiable_unit: Path) -> None:
    """``systemd-analyze security --offline`` rates the sandbox at 2.0 or better ("OK")."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(verifiable_unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert 0 == result.returncode, result.stdout[-2000:]


def test_unit_lifecycle_and_hardening() -> None:
    """The unit is Type=notify with a watchdog, reloads with SIGHUP and runs sandboxed."""
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    expected = {
        "Service.Type": ["notify"],
        "Service.NotifyAccess": ["main"],
        "Service.WatchdogSec": ["120s"],
        "Service.Restart": ["on-failure"],
        "Service.ExecStart": ["/usr/local/bin/watcher run -c /etc/watcher/config.yaml"],
        "Service.ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Service.KillSignal": ["SIGTERM"],
        "Service.TimeoutStopSec": ["30s"],
        "Service.LimitNOFILE": ["8192"],
        "Service.DynamicUser": ["yes"],
        "Service.StateDirectory": ["watcher"],
        "Service.UMask": ["0077"],
        "Service.NoNewPrivileges": ["yes"],
        "Service.CapabilityBoundingSet": [""],
        "Service.ProtectSystem": ["strict"],
        "Service.ProtectHome": ["yes"],
        "Service.PrivateTmp": ["yes"],
        "Service.PrivateDevices": ["yes"],
        "Service.ProtectKernelTunables": ["yes"],
        "Service.ProtectKernelModules": ["yes"],
        "Service.ProtectKernelLogs": ["yes"],
        "Service.ProtectControlGroups": ["yes"],
        "Service.RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
        "Service.RestrictNamespaces": ["yes"],
        "Service.LockPersonality": ["yes"],
        "Service.MemoryDenyWriteExecute": ["yes"],
        "Service.SystemCallFilter": ["@system-service", "~@privileged @resources"],
        "Service.SystemCallArchitectures": ["native"],
        "Install.WantedBy": ["multi-user.target"],
    }
    assert expected == {key: settings.get(key) for key in expected}


def test_unit_leaves_descriptors_beyond_the_endpoint_cap() -> None:
    """A flood of clients on the HTTP endpoint cannot take the descriptors the daemon's own
    API requests need: the unit's limit is many times the endpoint's connection cap."""
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    (limit,) = settings["Service.LimitNOFILE"]
    assert int(limit) >= 8 * MAX_CONNECTIONS


def test_every_credential_the_config_reads_is_loaded_by_the_unit() -> None:
    """Each ``${CREDENTIALS_DIRECTORY}/NAME`` in the config has a ``LoadCredential=NAME:``
    from /etc/watcher/credentials/NAME, and no secret is written in the config itself."""
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    loaded = dict(value.split(":", 1) for value in settings["Service.LoadCredential"])
    config_text = SYSTEMD_CONFIG.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/([A-Za-z0-9_.-]+)", config_text))
    assert {"mistral_api_key", "webhook_secret", "slack_webhook_url"} == used
    assert {name: f"/etc/watcher/credentials/{name}" for name in sorted(used)} == loaded
    raw = yaml.safe_load(config_text)
    secret_keys = {"api_key", "secret", "webhook_url", "token", "password", "routing_key"}
    inline = [
        (entry["name"], key)
        for entry in raw["sources"] + raw["sinks"]
        for key in entry
        if key in secret_keys
    ]
    assert [] == inline


def _credentials(directory: Path) -> dict[str, str]:
    values = {
        "mistral_api_key": "test-mistral-key-0123456789",
        "webhook_secret": "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode(),
        "slack_webhook_url": "https://hooks.slack.com/services/T000/B000/testtoken",
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (directory / name).write_text(value + "\n", encoding="utf-8")
    return values


def test_systemd_config_passes_check_config(tmp_path: Path) -> None:
    """``watcher check-config`` accepts deploy/systemd/config.yaml with the credentials in
    ``$CREDENTIALS_DIRECTORY``, as systemd would provide them, and prints none of them."""
    secrets = _credentials(tmp_path / "credentials")
    env = {"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": str(tmp_path / "credentials")}
    result = subprocess.run(
        [str(WATCHER_BIN), "check-config", "-c", str(SYSTEMD_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert (0, "") == (result.returncode, result.stderr)
    assert "state: sqlite:////var/lib/watcher/state.db" in result.stdout
    assert [] == [name for name, value in secrets.items() if value in result.stdout]


def test_systemd_config_needs_the_credentials_directory(tmp_path: Path) -> None:
    """Outside the unit (no ``$CREDENTIALS_DIRECTORY``) the config is refused, naming the key."""
    result = subprocess.run(
        [str(WATCHER_BIN), "check-config", "-c", str(SYSTEMD_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert 2 == result.returncode
    assert "sources[0].api_key_file: undefined environment variable CREDENTIALS_DIRECTORY" in (
        result.stderr
    )


# --- Kubernetes -------------------------------------------------------------------------


@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize`` renders (offline), which must say nothing on stderr."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE / kustomization)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (0, "") == (result.returncode, result.stderr)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc is not None)


def one(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert 1 == len(found), kind
    return found[0]


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_manifests_render_and_match_the_schemas(kustomization: str) -> None:
    """Every rendered object passes ``kubernetes-validate --strict`` (no unknown field)."""
    objects = render(kustomization)
    checked = []
    for obj in objects:
        if obj["apiVersion"].startswith(OPERATOR_GROUPS):
            continue  # a CRD: no schema here (tests/unit/test_observability.py checks it)
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
            checked.append((obj["kind"], version))
    core = [obj for obj in objects if not obj["apiVersion"].startswith(OPERATOR_GROUPS)]
    assert (len(core) * len(K8S_VERSIONS), 1) == (len(checked), len(objects) - len(core))


@needs_kubectl
def test_schema_validation_rejects_a_misspelt_field() -> None:
    """The schema check above is not vacuous: strict validation rejects an unknown key."""
    deployment = copy.deepcopy(one(render("base"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = (
        True
    )
    with pytest.raises(kubernetes_validate.ValidationError, match="runAsNonroot"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pod_is_locked_down_and_probed(kustomization: str) -> None:
    """Non-root 10001, read-only root, no capabilities, RuntimeDefault seccomp; probes on
    the named port 9464; a 40 s grace period; a writable /tmp; requests and limits."""
    objects = render(kustomization)
    pod = one(objects, "Deployment")["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    } == spec["securityContext"]
    assert {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    } == container["securityContext"]
    assert [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}] == container["ports"]
    probes = {
        name: (container[name]["httpGet"]["path"], container[name]["httpGet"]["port"])
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert {
        "startupProbe": ("/healthz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
    } == probes
    assert 40 == spec["terminationGracePeriodSeconds"]
    assert (False, False) == (spec["automountServiceAccountToken"], spec["enableServiceLinks"])
    assert {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    } == container["resources"]
    assert {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    } == pod["metadata"]["annotations"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {"emptyDir": {"sizeLimit": "64Mi"}, "name": "tmp"} == by_name(spec["volumes"])[
        mounts["/tmp"]
    ]
    account = one(objects, "ServiceAccount")
    assert (account["metadata"]["name"], False) == (
        spec["serviceAccountName"],
        account["automountServiceAccountToken"],
    )
    service = one(objects, "Service")
    assert (
        "ClusterIP",
        [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
    ) == (
        service["spec"]["type"],
        service["spec"]["ports"],
    )
    assert pod["metadata"]["labels"] | service["spec"]["selector"] == pod["metadata"]["labels"]


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_only_the_http_port_is_reachable_and_only_from_named_places(kustomization: str) -> None:
    """The NetworkPolicy selects the Deployment's pods and admits TCP to the named HTTP port
    only, from the pod's namespace and the monitoring and ingress namespaces; egress (the
    API, the sinks) is not restricted."""
    objects = render(kustomization)
    policy = one(objects, "NetworkPolicy")["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = policy["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert ["Ingress"] == policy["policyTypes"]
    (rule,) = policy["ingress"]
    assert [{"port": "http", "protocol": "TCP"}] == rule["ports"]
    namespaces = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in rule["from"]
        if "namespaceSelector" in peer
    ]
    assert (["monitoring", "ingress-nginx"], [{"podSelector": {}}]) == (
        namespaces,
        [peer for peer in rule["from"] if "namespaceSelector" not in peer],
    )


@needs_kubectl
@pytest.mark.parametrize("kustomization", ["base", "overlays/sqlite"])
def test_sqlite_deployment_is_a_single_writer(kustomization: str) -> None:
    """SQLite: one replica, Recreate (never two pods on the database), state on the PVC."""
    objects = render(kustomization)
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert (1, {"type": "Recreate"}) == (spec["replicas"], spec["strategy"])
    claim = one(objects, "PersistentVolumeClaim")
    assert ["ReadWriteOnce"] == claim["spec"]["accessModes"]
    pod = spec["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    state_volume = by_name(pod["volumes"])[mounts["/var/lib/watcher"]]
    assert {"claimName": claim["metadata"]["name"]} == state_volume["persistentVolumeClaim"]
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert "sqlite:////var/lib/watcher/state.db" == config["state"]["url"]


@needs_kubectl
def test_postgres_overlay_runs_three_replicas_without_a_volume() -> None:
    """PostgreSQL: 3 replicas rolled one at a time, a PDB keeping 2, no PVC, and the DSN
    from the Secret as ``$WATCHER_STATE_URL``, which the config names as ``state.url``."""
    objects = render("overlays/postgres")
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert (3, "RollingUpdate", 1) == (
        spec["replicas"],
        spec["strategy"]["type"],
        spec["strategy"]["rollingUpdate"]["maxUnavailable"],
    )
    budget = one(objects, "PodDisruptionBudget")
    assert (2, spec["selector"]) == (budget["spec"]["minAvailable"], budget["spec"]["selector"])
    assert [] == [obj for obj in objects if obj["kind"] == "PersistentVolumeClaim"]
    pod = spec["template"]["spec"]
    assert [] == [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    env = by_name(pod["containers"][0]["env"])
    ref = env["WATCHER_STATE_URL"]["valueFrom"]["secretKeyRef"]
    secret = one(objects, "Secret")
    assert (secret["metadata"]["name"], True) == (ref["name"], ref["key"] in secret["data"])
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert "${WATCHER_STATE_URL}" == config["state"]["url"]
    # Each replica is named after its pod in the lock holders, status and /readyz.
    assert {"fieldPath": "metadata.name"} == env["WATCHER_REPLICA"]["valueFrom"]["fieldRef"]


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_config_secrets_and_mounts_fit_together(kustomization: str) -> None:
    """The ConfigMap is mounted where ``-c`` points, each ``*_file`` names a key of the
    mounted Secret, and ``http.listen`` serves the probes' port on every interface."""
    objects = render(kustomization)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = by_name(pod["volumes"])
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    config_map, secret = one(objects, "ConfigMap"), one(objects, "Secret")
    assert ["run", "-c", "/etc/watcher/config.yaml"] == container["args"]
    assert ({"name": config_map["metadata"]["name"]}, ["config.yaml"]) == (
        mounts["/etc/watcher"]["configMap"],
        sorted(config_map["data"]),
    )
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    files = [
        value
        for entry in config["sources"] + config["sinks"]
        for key, value in entry.items()
        if key.endswith("_file")
    ]
    assert files
    for path in map(Path, files):
        volume = mounts[str(path.parent)]
        assert (secret["metadata"]["name"], True) == (
            volume["secret"]["secretName"],
            path.name in secret["data"],
        )
    host, _, port = config["http"]["listen"].rpartition(":")
    # Every interface: the kubelet probes the pod's IP, not its loopback.
    assert ("0.0.0.0", HTTP_PORT) == (host, int(port))  # noqa: S104


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_secrets_are_clearly_marked_placeholders(kustomization: str) -> None:
    """Every value of the generated Secret is a REPLACE_ME placeholder, nothing real."""
    secret = one(render(kustomization), "Secret")
    values = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert [] == [key for key, value in values.items() if "REPLACE_ME" not in value]


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kubernetes_config_is_valid(kustomization: str, tmp_path: Path) -> None:
    """The ConfigMap's config validates once its secret files hold real-looking values.

    The placeholders are rejected on purpose (an unedited deployment should not start), so
    test values are written instead, at the same file names. The PostgreSQL store is a later
    issue: its ``${WATCHER_STATE_URL}`` gets a SQLite URL here to check everything else.
    While ``http`` is not a config key yet (another change adds it), the test checks that it
    is the only thing refused.
    """
    objects = render(kustomization)
    text = one(objects, "ConfigMap")["data"]["config.yaml"]
    secret_dir = tmp_path / "secrets"
    values = _credentials(secret_dir)
    secret_keys = set(one(objects, "Secret")["data"])
    assert set(values) <= secret_keys
    raw = yaml.safe_load(text.replace("/run/secrets/watcher/", f"{secret_dir}/"))
    env = {"WATCHER_STATE_URL": f"sqlite:///{tmp_path}/state.db"}
    if "http" not in Config.model_fields:
        with pytest.raises(ConfigError) as refused:
            validate_config(raw, env=env)
        assert ("http", "unknown key") == (refused.value.path, refused.value.message)
        raw = {key: value for key, value in raw.items() if key != "http"}
    config = validate_config(raw, env=env)
    assert ["workflows", "batch"] == [source.name for source in config.sources]


@needs_kubectl
def test_unedited_secret_placeholders_are_refused(tmp_path: Path) -> None:
    """Deployed as shipped, the REPLACE_ME values fail validation (exit 2 naming the field)
    instead of signing webhooks with a published key."""
    objects = render("overlays/sqlite")
    for key, value in one(objects, "Secret")["data"].items():
        (tmp_path / key).write_bytes(base64.b64decode(value))
    text = one(objects, "ConfigMap")["data"]["config.yaml"]
    raw = yaml.safe_load(text.replace("/run/secrets/watcher/", f"{tmp_path}/"))
    with pytest.raises(ConfigError) as refused:
        validate_config(raw, env={})
    assert "sinks[0].secret" == refused.value.path


# --- Dockerfile ---------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions (keyword upper-cased, arguments as written).

    Enough of the Dockerfile syntax for this file: comments, backslash continuations and
    ``${VAR}`` in FROM from the global ARGs declared before the first FROM.
    """
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert "" == pending, "the Dockerfile ends inside a continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            assert "ARG" == keyword, f"{keyword} before the first FROM"
            arg_name, _, default = args.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return stages


@functools.cache
def dockerfile() -> tuple[Stage, ...]:
    return tuple(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    """A builder stage and a final stage, both on python:3.11-slim."""
    stages = dockerfile()
    assert [("python:3.11-slim", "builder"), ("python:3.11-slim", None)] == [
        (stage.base, stage.name) for stage in stages
    ]


def test_builder_installs_from_the_lock() -> None:
    """The builder copies the locks and installs them hash-checked (``--require-hashes``,
    which also refuses a dependency the lock does not pin); the only other install is the
    wheel it built, without dependencies; every file it copies from the build context (the
    repository root) exists."""
    builder = dockerfile()[0]
    copied = [shlex.split(args) for args in builder.all("COPY")]
    sources = [src for words in copied for src in words[:-1] if not src.startswith("--")]
    assert {"requirements.lock", "requirements-bootstrap.lock", "LICENSE"} <= set(sources)
    assert [] == [src for src in sources if not (REPO / src).exists()]
    commands = [cmd.strip() for args in builder.all("RUN") for cmd in args.split("&&")]
    installs = [cmd for cmd in commands if "pip install" in cmd]
    assert [
        "/opt/watcher/bin/pip install --require-hashes --requirement requirements.lock",
        "/opt/build/bin/pip install --require-hashes --requirement requirements-bootstrap.lock",
        "/opt/watcher/bin/pip install --no-deps /dist/*.whl",
    ] == installs
    (wheel,) = [cmd for cmd in commands if "pip wheel" in cmd]
    assert {"--no-deps", "--no-build-isolation"} <= set(wheel.split())


def test_the_image_lock_holds_the_runtime_and_the_postgres_extra() -> None:
    """What the builder installs: every runtime dependency of pyproject.toml and asyncpg
    (overlays/postgres runs the same image), each pinned with hashes; none of the dev tools."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    wanted = {
        norm(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0])
        for spec in [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    }
    text = (REPO / "requirements.lock").read_text(encoding="utf-8")
    pin = re.compile(r"^([A-Za-z0-9_.-]+)==\S+(?: ;[^\\\n]*)? \\$", re.M)  # a marker may follow
    pinned = {norm(m[1]) for m in pin.finditer(text)}
    assert set() == wanted - pinned
    assert "asyncpg" in pinned
    assert set() == {"pytest", "ruff", "mypy", "uv", "mistralai"} & pinned


def test_final_stage_carries_only_the_venv() -> None:
    """The final stage copies the builder's venv and nothing else, and installs no
    compiler or package (no apt-get, no pip)."""
    final = dockerfile()[-1]
    assert ["--from=builder /opt/watcher /opt/watcher"] == final.all("COPY")
    assert [] == final.all("ADD")
    forbidden = re.compile(r"apt-get|apt |apk |gcc|g\+\+|build-essential|pip install|make ")
    assert [] == [args for args in final.all("RUN") if forbidden.search(args)]


def test_final_stage_runs_watcher_as_a_numeric_non_root_user() -> None:
    """USER is the numeric 10001 (the Kubernetes runAsUser); entrypoint, command, signal,
    port, volume and labels are set."""
    final = dockerfile()[-1]
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert (str(UID), str(UID)) == (uid, gid)
    assert (['["watcher"]'], ['["run", "-c", "/etc/watcher/config.yaml"]']) == (
        final.all("ENTRYPOINT"),
        final.all("CMD"),
    )
    assert (["SIGTERM"], [str(HTTP_PORT)], ["/var/lib/watcher"], ["/var/lib/watcher"]) == (
        final.all("STOPSIGNAL"),
        final.all("EXPOSE"),
        final.all("VOLUME"),
        final.all("WORKDIR"),
    )
    labels = " ".join(final.all("LABEL"))
    assert "org.opencontainers.image.title" in labels


def healthcheck_code() -> str:
    (healthcheck,) = dockerfile()[-1].all("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options
    argv = json.loads(command)
    assert ["python", "-c"] == argv[:2]
    return str(argv[2])


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_healthcheck_probes_healthz_with_the_standard_library(
    health_server: tuple[int, type[_Health]],
) -> None:
    """The HEALTHCHECK's Python one-liner exits 0 on a 200 from /healthz and fails on a 503
    (run here with the port moved to a local test server)."""
    code = healthcheck_code()
    url = f"http://127.0.0.1:{HTTP_PORT}/healthz"
    assert (True, 1) == ("import urllib.request" in code, code.count(url))
    port, handler = health_server
    local = code.replace(f":{HTTP_PORT}/", f":{port}/")
    outcomes = []
    for status in (200, 503):
        handler.status = status
        result = subprocess.run(
            [sys.executable, "-I", "-c", local], capture_output=True, check=False, timeout=30
        )
        outcomes.append(result.returncode)
    assert [0, 1] == outcomes
