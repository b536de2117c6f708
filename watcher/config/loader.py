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


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _expand(node: Any, at: tuple[str | int, ...], env: Mapping[str, str]) -> Any:
    """``${VAR}`` from ``env`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name not in env:
                raise ConfigError(_path(at), f"undefined environment variable {name}")
            return env[name]

        return _VAR.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, (*at, str(k)), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, (*at, i), env) for i, v in enumerate(node)]
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
            where = _path((*at, key))
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


def _error_path(loc: tuple[str | int, ...], raw: Any) -> str:
    """Pydantic's location without the discriminator tags it inserts (``sinks.1.webhook``)."""
    parts: list[str | int] = []
    node = raw
    for part in loc:
        if (
            isinstance(node, dict)
            and isinstance(part, str)
            and part not in node
            and (part == node.get("kind"))
        ):
            continue  # discriminated-union tag, not a key of the file
        parts.append(part)
        if isinstance(node, dict):
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return _path(tuple(parts))


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        tags = error.get("ctx", {}).get("expected_tags", "")
        return f"unknown kind (expected one of {tags})"
    if kind == "union_tag_not_found":
        return "kind is missing"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def validate_config(
    raw: Any, *, env: Mapping[str, str] | None = None, base: Path | None = None
) -> Config:
    """A :class:`Config` from an already parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError("", "the config file must be a YAML mapping (sources:, sinks:, …)")
    expanded = _expand(raw, (), os.environ if env is None else env)
    resolved = _read_secret_files(expanded, (), base or Path.cwd())
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        where = _error_path(tuple(first["loc"]), resolved)
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            where += ".kind"
        raise ConfigError(where, _message(first) + more) from None
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
