"""Fail fast when the tracking server cannot be reached, before any trial runs."""

from __future__ import annotations

import urllib.error
import urllib.request

from sweeps.errors import UsageError
from sweeps.storage.backends import redact

__all__ = ["check_tracking"]


def check_tracking(uri: str, timeout: float = 5.0) -> None:
    """``UsageError`` unless an http(s) tracking server answers ``/health`` in time."""
    if not uri.startswith(("http://", "https://")):
        if not uri.startswith("sqlite:///") and "://" not in uri:
            raise UsageError("tracking-uri", uri, "use sqlite:///PATH or http(s)://HOST:PORT")
        return
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
