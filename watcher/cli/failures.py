"""What a command says when it cannot run: one line, never a traceback, for what an
operator can fix (a port in use, a path that cannot be created, a database out of reach, a
full disk); the traceback stays for bugs.

Task groups wrap errors in exception groups: the leaves are what happened.
"""

from __future__ import annotations

from watcher.exceptions import WatcherError
from watcher.render.text import clean

# Driver errors that mean the database is out of reach or refuses (by class name: the
# command line does not import the drivers to tell them apart).
_DATABASE_ERRORS = frozenset(
    {"OperationalError", "InterfaceError", "DisconnectionError", "InvalidPasswordError"}
)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``'s (nested) groups, or ``[exc]``."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def operational(exc: BaseException) -> bool:
    """An error of the surroundings, not of watcher: said in one line."""
    if isinstance(exc, WatcherError | OSError | TimeoutError):
        return True
    name = type(exc).__name__
    module = type(exc).__module__
    if name in _DATABASE_ERRORS or module.startswith("asyncpg"):
        return True
    return isinstance(exc, ValueError) and module == "builtins"


def one_line(exc: BaseException) -> str | None:
    """``exc`` as one line for stderr when every part of it is operational, else ``None``
    (a bug: the caller logs the traceback)."""
    found = leaves(exc)
    if not found or not all(operational(leaf) for leaf in found):
        return None
    said = []
    for leaf in found:
        text = str(leaf).split("\n", 1)[0] or type(leaf).__name__
        if type(leaf).__module__.startswith(("sqlalchemy", "asyncpg")):
            text = f"the state database: {text}"
        said.append(clean(text, 300, mark="?"))
    return "; ".join(dict.fromkeys(said))
