"""What a tracking server's database holds of a study: every epoch of every trial's run, and
how many metric rows in all."""

from __future__ import annotations

__all__ = ["loss_rows_complete", "metric_rows"]


def loss_rows_complete(tracking_db: str, study: str, every: int = 1) -> bool:
    """True if every trial run of ``study`` holds one ``loss`` row per epoch it ran (per
    epoch that is a multiple of ``every``: ``--log-every``)."""
    import sqlalchemy as sa

    engine = sa.create_engine(tracking_db, poolclass=sa.NullPool)
    rows_q = sa.text(
        "SELECT r.run_uuid, l.value, "
        "(SELECT count(*) FROM metrics m WHERE m.run_uuid = r.run_uuid AND m.key = 'loss') "
        "FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        "JOIN latest_metrics l ON l.run_uuid = r.run_uuid AND l.key = 'epochs_run' "
        "WHERE e.name = :study")
    with engine.connect() as conn:
        rows = conn.execute(rows_q, {"study": study}).all()
    engine.dispose()
    return bool(rows) and all(-(-int(epochs) // every) == count for _, epochs, count in rows)


def metric_rows(tracking_db: str) -> int:
    """The rows of MLflow's ``metrics`` table."""
    import sqlalchemy as sa

    engine = sa.create_engine(tracking_db, poolclass=sa.NullPool)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM metrics")).scalar()
    engine.dispose()
    return int(count or 0)
