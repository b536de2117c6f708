"""Reading the config file: YAML, ``${VAR}`` from the environment, ``*_file`` secrets,
validation into :class:`~watcher.config.model.Config`.

Raises only :class:`ConfigError`, naming the exact field (``sinks[1].url: …``); secrets
never appear in its message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from watcher.config.errors import Problem, error_path, message, path_of, raise_all
from watcher.config.model import Config, check_references
from watcher.config.yamlsafe import YamlLimitError, load_limited
from watcher.exceptions import ConfigError

DEFAULT_PATH = Path("/etc/watcher/config.yaml")

# Keys whose value may be given as ``<key>_file`` (Kubernetes secret mounts, systemd
# credentials). ``ca_file`` and friends are plain paths, not secret files.
SECRET_FILE_KEYS = frozenset(
    {
        "api_key",
        "secret",
        "url",
        "webhook_url",
        "token",
        "password",
        "routing_key",
        "signing_secret",
        "app_token",
    }
)

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(
    node: Any, at: tuple[str | int, ...], env: Mapping[str, str], missing: list[Problem]
) -> Any:
    """``${VAR}`` from ``env`` in every string; ``$$`` is a literal ``$``. Each undefined
    variable is added to ``missing`` (all of them are told at once)."""
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name not in env:
                missing.append((path_of(at), f"undefined environment variable {name}"))
                return ""
            return env[name]

        return _VAR.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, (*at, str(k)), env, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, (*at, i), env, missing) for i, v in enumerate(node)]
    return node


def _read_secret_files(node: Any, at: tuple[str | int, ...], base: Path) -> Any:
    """Replace ``<key>_file: PATH`` by ``<key>: <file contents>`` for secret keys."""
    if isinstance(node, list):
        return [_read_secret_files(v, (*at, i), base) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        key = str(key)
        stem = key.removesuffix("_file")
        if key.endswith("_file") and stem in SECRET_FILE_KEYS:
            where = path_of((*at, key))
            if stem in node:
                raise ConfigError(where, f"give either {stem} or {key}, not both")
            if not isinstance(value, str) or not value:
                raise ConfigError(where, "must be a file path")
            path = Path(os.path.expandvars(value))
            if not path.is_absolute():
                path = base / path
            try:
                out[stem] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(where, f"cannot read {path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ConfigError(where, f"cannot read {path}: not UTF-8 text") from None
            if not out[stem]:
                raise ConfigError(where, f"{path} is empty")
        else:
            out[key] = _read_secret_files(value, (*at, key), base)
    return out


def validate_config(
    raw: Any, *, env: Mapping[str, str] | None = None, base: Path | None = None
) -> Config:
    """A :class:`Config` from an already parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError("", "the config file must be a YAML mapping (sources:, sinks:, …)")
    missing: list[Problem] = []
    expanded = _expand(raw, (), os.environ if env is None else env, missing)
    raise_all(missing)
    resolved = _read_secret_files(expanded, (), base or Path.cwd())
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        problems: list[Problem] = []
        for error in exc.errors(include_url=False, include_input=False):
            where = error_path(tuple(error["loc"]), resolved)
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                where += ".kind"
            problems.append((where, message(error, Config, SECRET_FILE_KEYS)))
        raise_all(problems)
        raise  # unreachable: a ValidationError has at least one error
    check_references(config)
    return config


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, expand, validate; raises only :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"cannot read {path}: not UTF-8 text") from None
    try:
        raw = load_limited(text)
    except YamlLimitError as exc:
        raise ConfigError("", f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{path}: {problem}{where}") from None
    return validate_config(raw, env=env, base=path.parent)


def resolve_path(cli_value: str | None) -> Path:
    """``-c`` first, else ``$WATCHER_CONFIG``, else ``/etc/watcher/config.yaml``."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get("WATCHER_CONFIG"):
        return Path(os.environ["WATCHER_CONFIG"])
    return DEFAULT_PATH
