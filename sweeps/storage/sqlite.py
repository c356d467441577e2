"""SQLite settings for many small commits from one or a few processes.

Write-ahead logging lets readers and one writer proceed together and makes a commit one
append; ``synchronous=NORMAL`` syncs the log at checkpoints instead of at every commit (a
power cut can lose the last commits, never corrupt the file). Optuna commits a few times per
trial and epoch chunk, so with the default rollback journal and full sync these commits
dominated a batched sweep's run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["tune_sqlite"]


def _pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def tune_sqlite(engine: Engine) -> None:
    """Apply the pragmas to every connection ``engine`` opens from now on (a no-op for other
    databases); pooled connections are dropped so that none escapes them."""
    import sqlalchemy

    if engine.dialect.name != "sqlite":
        return
    sqlalchemy.event.listen(engine, "connect", _pragmas)
    engine.dispose()
