"""Ending an MLflow run: its terminal status and end time, set in one store call.

``MlflowClient.set_terminated`` first reads the whole run back from a tracking server, only
to print a link to it on stdout: a second round trip for every run, and two lines a
``--quiet`` sweep does not want. ``terminate`` sends the one ``UpdateRun`` request (one
``UPDATE`` on a SQL store) that changes the run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["terminate"]


def terminate(client: MlflowClient, run_id: str, status: str) -> None:
    """Set run ``run_id``'s ``status`` (``FINISHED``, ``FAILED``, ``KILLED``) and end time
    (now)."""
    from mlflow.entities import RunStatus

    store = _store(client)
    if store is None:  # an MLflow whose client no longer holds its store: its public call
        client.set_terminated(run_id, status=status)
        return
    store.update_run_info(run_id, run_status=RunStatus.from_string(status),
                          end_time=int(time.time() * 1000), run_name=None)


def _store(client: MlflowClient) -> Any:
    """The tracking store behind ``client`` (MLflow has no public accessor), or None."""
    return getattr(getattr(client, "_tracking_client", None), "store", None)
