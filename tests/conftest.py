"""Fixtures that start real PostgreSQL and MLflow servers on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

try:  # tests/ as a plain folder (pytest puts it on sys.path) or as a package
    from servers import MlflowServer, PostgresCluster
except ImportError:  # pragma: no cover
    from tests.servers import MlflowServer, PostgresCluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running test (deselect with -m 'not slow')")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster per session; call ``create_database(name)`` per test."""
    if not PostgresCluster.available():
        message = "PostgreSQL binaries (initdb, pg_ctl) not found"
        if _in_ci():
            pytest.fail(f"{message}; they are required when CI is set", pytrace=False)
        pytest.skip(message)
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[MlflowServer]:
    """One MLflow tracking server (sqlite backend in a temp folder) per session."""
    with MlflowServer() as server:
        yield server


@pytest.fixture
def make_mlflow_server() -> Iterator[Callable[..., MlflowServer]]:
    """Factory: ``make_mlflow_server(backend_uri, port=None)`` starts a server (on ``port``
    if given) that is stopped after the test."""
    with ExitStack() as stack:

        def make(backend_uri: str, port: int | None = None) -> MlflowServer:
            return stack.enter_context(MlflowServer(backend_uri, port=port))

        yield make
