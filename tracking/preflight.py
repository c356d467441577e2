"""Fail fast when the tracking server cannot be reached, before any trial runs."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from sweeps.errors import UsageError
from sweeps.storage.backends import redact

__all__ = ["bound_http_retries", "check_tracking"]


def bound_http_retries() -> None:
    """Bound MLflow's HTTP retries (default: ~4 minutes per call to a dead server)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def check_tracking(uri: str, timeout: float = 5.0) -> None:
    """``UsageError`` unless an http(s) tracking server answers ``/health`` in time."""
    if not uri.startswith(("http://", "https://")):
        if not uri.startswith("sqlite:///") and "://" not in uri:
            raise UsageError("tracking-uri", uri, "use sqlite:///PATH or http(s)://HOST:PORT")
        return
    bound_http_retries()
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
            if reply.status == 200:
                return
            problem = f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise UsageError("tracking-uri", redact(uri),
                     f"use a reachable MLflow server (GET /health: {problem})")
