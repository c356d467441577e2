"""Optuna storage from a URL: ``sqlite:///PATH``, ``postgresql://...`` (with any driver,
``postgresql+psycopg2://...``) or ``journal:///PATH`` (Optuna's JournalStorage file backend,
for several processes on one machine); and URLs with their passwords masked."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.errors import UsageError
from sweeps.storage.sqlite import tune_sqlite

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_STORAGE", "DEFAULT_TRACKING_URI", "JOURNAL_SCHEME", "WORKERS_STORAGE",
           "absolute_uri", "dispose_engine", "local_path", "open_storage", "redact"]

JOURNAL_SCHEME = "journal:///"
DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"  # the study's, for one process
WORKERS_STORAGE = "journal:///mlruns/optuna.journal"  # the study's, for --workers > 1
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"  # MLflow's; artifacts in mlruns/artifacts
_SQL_SCHEMES = ("sqlite", "postgresql")
_WEB_SCHEMES = ("http", "https")  # an MLflow tracking server


def local_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` or ``journal:///`` URL (relative as given), else None."""
    for prefix in ("sqlite:///", JOURNAL_SCHEME):
        if url.startswith(prefix) and url != "sqlite:///:memory:":
            return Path(url.removeprefix(prefix))
    return None


def absolute_uri(url: str, *, create_folder: bool = False) -> str:
    """``url`` with a local file path made absolute (MLflow caches stores by URI, so a
    relative one would follow the first working directory); optionally creates its folder."""
    path = local_path(url)
    if path is None:
        return url
    path = path.resolve()
    if create_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    prefix = JOURNAL_SCHEME if url.startswith(JOURNAL_SCHEME) else "sqlite:///"
    return prefix + str(path)


def _rdb_storage(url: str, engine: dict[str, Any], attempts: int = 5) -> Any:
    """``RDBStorage``; another process setting up the same empty database at the same moment
    makes the schema set-up fail once (a duplicate version row, or a table created between
    Optuna's check and its ``CREATE TABLE``): then the schema exists, so try again."""
    import time

    import optuna
    import sqlalchemy

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.ProgrammingError) as exc:
            if attempt == attempts - 1 or not _lost_set_up_race(exc):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _lost_set_up_race(exc: Exception) -> bool:
    """Whether ``exc`` says another process created the schema first."""
    import sqlalchemy

    text = str(exc).lower()
    return isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in text


def drop_torn_tail(path: Path, lock: Any) -> None:
    """Cut a journal's last line if a writer died before finishing it.

    Optuna skips such a line when reading, but the next record would be appended onto it and
    corrupt the file for good. Cut under the journal's own lock, so no writer is mid-append.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    lock.acquire()
    try:
        with open(path, "rb+") as journal:
            data = journal.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            journal.truncate(keep)
        log.warning("%s: dropped a torn last record (%d bytes) left by an interrupted "
                    "writer", path, len(data) - keep)
    finally:
        lock.release()


def redact(url: str) -> str:
    """``url`` with its password, if it has one, shown as ``***`` (for logs, tags, messages).

    SQLAlchemy renders a database URL with its password hidden. A web URL (``http(s)://``),
    text SQLAlchemy cannot parse, and a password holding an unquoted ``@`` (SQLAlchemy ends
    the password at the first ``@``, ``urllib`` at the last) keep every other character.
    """
    if url.partition("://")[0].lower() not in _WEB_SCHEMES:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):  # a path, a name, a port that is not a number
            pass
        else:
            if parsed.password is None:
                return url  # as given, not re-rendered
            if "@" not in (parsed.host or ""):
                return parsed.render_as_string(hide_password=True)
    return _mask_userinfo_password(url)


def _mask_userinfo_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` (split as ``urllib`` does)
    replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


_DRIVER_HINT = "for PostgreSQL: pip install -e '.[postgres]'"


def open_storage(url: str) -> BaseStorage:
    """The storage behind ``url``; creates the folder of a local SQLite or journal file."""
    import optuna

    url = absolute_uri(url, create_folder=True)
    if url.startswith(JOURNAL_SCHEME):
        path = Path(url.removeprefix(JOURNAL_SCHEME))
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

        drop_torn_tail(path, JournalFileSymlinkLock(str(path)))
        backend = JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in _SQL_SCHEMES:
        allowed = "use sqlite:///PATH, postgresql://..., or journal:///PATH"
        raise UsageError("storage", redact(url), allowed)
    engine = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
    try:
        storage = _rdb_storage(url, engine)
        tune_sqlite(storage.engine)
        return storage
    except ImportError as exc:  # the database's Python driver is not installed
        missing = getattr(exc.__cause__, "name", None) or str(exc)
        raise UsageError("storage", redact(url), f"install its Python driver {missing!r} "
                         f"({_DRIVER_HINT})") from None
    except Exception as exc:
        raise UsageError("storage", redact(url), f"use a reachable database ({exc})") from None


def dispose_engine(holder: object) -> None:
    """Close the connections of ``holder``'s SQLAlchemy engine, if it has one (MLflow's SQL
    store, Optuna's RDBStorage): its pool is replaced by an empty one, which reconnects on
    demand."""
    engine = getattr(holder, "engine", None)
    if engine is not None:
        engine.dispose()
