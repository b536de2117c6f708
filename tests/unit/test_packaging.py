"""The distribution as a user gets it: metadata, the version in one place, the locks, and the
built wheel installed in a fresh venv.

The sdist and the wheel are built once per session (``python -m build --no-isolation``, a
few seconds) and checked by ``twine check --strict``; the wheel is installed by uv (from its
cache, with the runtime lock as constraints) into a new venv whose ``watcher`` must run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import watcher
from tests import REPO
from watcher.config import validate_config
from watcher.exceptions import ConfigError, MissingExtra

BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
VERSION = PROJECT["version"]
LOCKS = ("requirements.lock", "requirements-dev.lock", "requirements-bootstrap.lock")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return norm(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0])


def pins(lock: str) -> dict[str, list[str]]:
    """``name`` -> its hashes, for each ``name==version`` of a lock file."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in (REPO / lock).read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==\S+", line):
            current = norm(match[1])
            found[current] = []
        elif hashed := re.search(r"--hash=sha256:([0-9a-f]{64})", line):
            found[current].append(hashed[1])
    return found


# --- metadata ------------------------------------------------------------------------------


def test_distribution_name_license_and_metadata() -> None:
    """A free name (``watcher`` on PyPI is another project), a licence expression with its
    file, requires-python, classifiers for each supported Python, authors and URLs."""
    assert "mistral-watcher" == PROJECT["name"] == watcher.DISTRIBUTION
    assert ("Apache-2.0", ["LICENSE"]) == (PROJECT["license"], PROJECT["license-files"])
    assert "Apache License" in (REPO / "LICENSE").read_text(encoding="utf-8")[:200]
    assert ">=3.11" == PROJECT["requires-python"]
    for minor in (11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in PROJECT["classifiers"]
    assert PROJECT["authors"]
    assert {"Homepage", "Changelog", "Issues"} <= set(PROJECT["urls"])
    assert {"watcher": "watcher.__main__:main"} == PROJECT["scripts"]


def test_version_is_written_only_in_pyproject() -> None:
    """No module of the package spells a version; the deploy files' image tags follow
    pyproject's (a release bumps them with it, this test says where)."""
    assert VERSION == watcher.__version__
    literal = re.compile(r"""["']\d+\.\d+\.\d+["']""")
    spelt = [
        str(path.relative_to(REPO))
        for path in (REPO / "watcher").rglob("*.py")
        if "migrations" not in path.parts and literal.search(path.read_text(encoding="utf-8"))
    ]
    assert [] == spelt
    tags = re.compile(r"(?:watcher:|newTag: \"|VERSION=)(\d+\.\d+\.\d+)")
    deploy = [p for p in (REPO / "deploy").rglob("*") if p.is_file()]
    found = {
        (str(path.relative_to(REPO)), tag)
        for path in deploy
        for tag in tags.findall(path.read_text(encoding="utf-8", errors="replace"))
    }
    assert found
    assert set() == {(path, tag) for path, tag in found if tag != VERSION}


# --- the locks -----------------------------------------------------------------------------


def test_locks_pin_every_requirement_with_hashes() -> None:
    """The runtime lock pins the runtime dependencies and the postgres extra (what the image
    installs), the dev lock every extra, the bootstrap lock uv and setuptools; every pin
    of every lock carries hashes (pip --require-hashes and uv check them)."""
    runtime, dev, bootstrap = (pins(lock) for lock in LOCKS)
    wanted = {requirement_name(spec) for spec in PROJECT["dependencies"]}
    extras: dict[str, list[str]] = PROJECT["optional-dependencies"]
    assert set() == (wanted | {requirement_name(s) for s in extras["postgres"]}) - set(runtime)
    every = wanted | {requirement_name(s) for specs in extras.values() for s in specs}
    assert set() == every - set(dev)
    assert {"uv", "setuptools"} == set(bootstrap)
    sdk3 = pins("tests/sdk3.lock")  # the contract test's mistralai 3.x, in .sdk3/
    assert "mistralai" in sdk3
    for lock in (runtime, dev, bootstrap, sdk3):
        assert [] == [name for name, hashes in lock.items() if not hashes]
    # The runtime lock carries none of the test tools or the SDK of the contract test.
    assert set() == {"pytest", "mistralai", "py-spy", "uv"} & set(runtime)


def test_locked_versions_satisfy_pyproject() -> None:
    """Every requirement of pyproject.toml (extras included) is met by the dev lock's
    version: a raised minimum without `make lock` fails here."""
    text = (REPO / LOCKS[1]).read_text(encoding="utf-8")
    locked = {norm(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}
    specs = [*PROJECT["dependencies"]]
    specs += [spec for extra in PROJECT["optional-dependencies"].values() for spec in extra]
    unmet = [
        (spec, locked.get(norm(req.name)))
        for spec in specs
        if (req := Requirement(spec)) and not req.specifier.contains(locked[norm(req.name)])
    ]
    assert [] == unmet
    assert not Requirement("pytest>=99").specifier.contains(locked["pytest"])


def test_runtime_and_dev_locks_agree() -> None:
    """A package in both locks has the same version in both (the tests test what ships)."""

    def versions(lock: str) -> dict[str, str]:
        text = (REPO / lock).read_text(encoding="utf-8")
        return {norm(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}

    runtime, dev = versions(LOCKS[0]), versions(LOCKS[1])
    assert {} == {name: (v, dev.get(name)) for name, v in runtime.items() if dev.get(name) != v}


# --- a missing extra -----------------------------------------------------------------------


def _config(url: str) -> dict[str, Any]:
    return {
        "sources": [{"name": "batch", "kind": "mistral-batch", "api_key": "k"}],
        "sinks": [{"name": "out", "kind": "console"}],
        "state": {"url": url},
    }


def test_postgres_without_asyncpg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without asyncpg, a postgresql:// state.url is refused by the config check (exit 2 in
    check-config), and the store and the replicas' locks refuse to load, each saying which
    extra to install; SQLite needs nothing more."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if never installed
    hint = "pip install 'mistral-watcher[postgres]'"
    with pytest.raises(ConfigError, match=re.escape(hint)) as caught:
        validate_config(_config("postgresql://watcher@db:5432/watcher"))
    assert "state.url" in str(caught.value)
    validate_config(_config("sqlite:///state.db"))
    for module in ("watcher.stores.postgres", "watcher.app.coordination.advisory"):
        monkeypatch.delitem(sys.modules, module, raising=False)
        with pytest.raises(MissingExtra, match=re.escape(hint)):
            __import__(module)


# --- the built distribution ----------------------------------------------------------------


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from this checkout (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    """Both files, under the distribution's name and version, pass ``twine check
    --strict`` (the README renders, the metadata is complete)."""
    built = sorted(p.name for p in dist.iterdir())
    assert [f"mistral_watcher-{VERSION}-py3-none-any.whl", f"mistral_watcher-{VERSION}.tar.gz"] == (
        built
    )
    result = subprocess.run(
        [str(BIN / "twine"), "check", "--strict", *(str(dist / name) for name in built)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    assert 2 == result.stdout.count("PASSED")


def test_wheel_installs_in_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    """``pip install`` of the wheel alone (uv here: the same resolution, from its cache)
    gives a working ``watcher`` with the license and the typed marker, and no asyncpg:
    that comes with the ``postgres`` extra."""
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    constraints = str(REPO / "requirements.lock")
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", python, "-c", constraints, str(wheel)],
        check=True,
        timeout=120,
    )
    result = subprocess.run(
        [str(venv / "bin" / "watcher"), "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (0, f"watcher {VERSION}") == (result.returncode, result.stdout.strip())
    probe = (
        "import importlib.metadata as m, importlib.util as u;"
        "d = m.distribution('mistral-watcher');"
        "print(d.metadata['License-Expression'], u.find_spec('asyncpg') is None,"
        " any(f.name == 'py.typed' for f in d.files), any(f.name == 'LICENSE' for f in d.files))"
    )
    shown = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True
    )
    assert "Apache-2.0 True True True" == shown.stdout.strip()
