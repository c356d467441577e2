"""What a tracking server's database holds of a study: every epoch of every trial's run."""

from __future__ import annotations

__all__ = ["loss_rows_complete"]


def loss_rows_complete(tracking_db: str, study: str) -> bool:
    """True if every trial run of ``study`` holds one ``loss`` row per epoch it ran."""
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
    return bool(rows) and all(int(epochs) == count for _, epochs, count in rows)
