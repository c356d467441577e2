"""Optuna storage from a URL: ``sqlite:///``, ``postgresql://`` (any SQLAlchemy URL) or
``journal:///path/to/file.journal`` (Optuna's JournalStorage file backend, for several
processes on one machine)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError
from .sqlite_tuning import tune_sqlite

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

__all__ = ["JOURNAL_SCHEME", "absolute_uri", "local_path", "open_storage", "redact"]

JOURNAL_SCHEME = "journal:///"
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql")


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


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, tags and messages)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_storage(url: str) -> BaseStorage:
    """The storage behind ``url``; creates the folder of a local SQLite or journal file."""
    import optuna

    url = absolute_uri(url, create_folder=True)
    if url.startswith(JOURNAL_SCHEME):
        path = Path(url.removeprefix(JOURNAL_SCHEME))
        from optuna.storages.journal import JournalFileBackend

        backend = JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in _SQL_SCHEMES:
        allowed = "use sqlite:///PATH, postgresql://..., or journal:///PATH"
        raise UsageError("storage", redact(url), allowed)
    engine = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
        tune_sqlite(storage.engine)
        return storage
    except Exception as exc:
        raise UsageError("storage", redact(url), f"use a reachable database ({exc})") from None
