"""Real PostgreSQL and MLflow tracking servers for tests.

Plain helpers with no pytest dependency: ``tests/conftest.py`` wraps them in
fixtures, and they can be used from a script as well::

    with PostgresCluster() as pg, MlflowServer(pg.create_database("mlflow")) as srv:
        client = mlflow.MlflowClient(tracking_uri=srv.url)

Everything binds to 127.0.0.1 on a free port and lives in a fresh temporary
folder that is removed on exit.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg2
from psycopg2 import sql

__all__ = ["MlflowServer", "PostgresCluster", "free_port", "wait_healthy"]

HOST = "127.0.0.1"
_PG_USER = "postgres"
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[Any], log_file: Path,
                 timeout: float = 60.0) -> None:
    """Return once ``url``/health answers 200; ``RuntimeError`` with the log's tail if
    ``proc`` (the process serving it) exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}\n{_tail(log_file)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not healthy after {timeout:.0f}s\n{_tail(log_file)}")
        time.sleep(0.2)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as exc:
        return f"<no log at {path}: {exc}>"


def _find_pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found

    def major(path: str) -> int:
        version = Path(path).parent.parent.name  # /usr/lib/postgresql/<v>/bin/<name>
        return int(version) if version.isdigit() else -1

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=major)
    return candidates[-1] if candidates else None


class _Service:
    """A server as a context manager: ``start()`` on entry (``stop()`` if that fails half
    way), ``stop()`` on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PostgresCluster(_Service):
    """A throwaway PostgreSQL cluster (trust auth, no durability) on 127.0.0.1.

    ``initdb`` refuses to run as root, so as root every server binary runs as
    the OS user ``postgres``; the cluster lives in a ``tempfile.mkdtemp()``
    folder owned by that user (pytest's ``tmp_path`` sits under a 0700 folder
    that ``postgres`` cannot enter).
    """

    def __init__(self, *, start_timeout: int = 60) -> None:
        self.start_timeout = start_timeout
        self.port = 0
        self.host = HOST
        self.user = _PG_USER
        self.base_dir: Path | None = None
        self._running = False

    @staticmethod
    def available() -> bool:
        """Whether ``initdb`` and ``pg_ctl`` can be found."""
        return all(_find_pg_binary(name) for name in ("initdb", "pg_ctl"))

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "cluster not started"
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "cluster not started"
        return self.base_dir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of database ``dbname`` on this cluster."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{dbname}"

    def start(self) -> None:
        initdb, pg_ctl = _find_pg_binary("initdb"), _find_pg_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
        self.base_dir = Path(tempfile.mkdtemp(prefix="pgtest-"))
        if os.geteuid() == 0:
            shutil.chown(self.base_dir, user=_PG_USER, group=_PG_USER)
        self._run(
            [initdb, "-D", str(self.data_dir), "-A", "trust", "-U", self.user,
             "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        )  # fmt: skip
        self.port = free_port()
        settings = {
            "listen_addresses": f"'{HOST}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# tests/servers.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        try:
            self._run(
                [pg_ctl, "-D", str(self.data_dir), "-l", str(self.log_file),
                 "-t", str(self.start_timeout), "-w", "start"]
            )  # fmt: skip
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- postgres log ---\n{_tail(self.log_file)}") from None
        self._running = True

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove its folder."""
        if self.base_dir is None:
            return
        pg_ctl = _find_pg_binary("pg_ctl")
        if self._running and pg_ctl is not None:
            self._run([pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"], check=False)
        self._running = False
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = None

    def pause(self) -> None:
        """Stop the server at once (immediate mode), keeping its data: clients' next
        queries fail until ``resume``."""
        pg_ctl = _find_pg_binary("pg_ctl")
        assert pg_ctl is not None and self._running
        self._run([pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])
        self._running = False

    def resume(self) -> None:
        """Start the paused server again, on the same port."""
        pg_ctl = _find_pg_binary("pg_ctl")
        assert pg_ctl is not None and not self._running
        self._run([pg_ctl, "-D", str(self.data_dir), "-l", str(self.log_file),
                   "-t", str(self.start_timeout), "-w", "start"])
        self._running = True

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"unsupported database name {name!r}")
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.url(name)

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            kwargs = {"user": _PG_USER, "group": _PG_USER, "extra_groups": []}
        proc = subprocess.run(
            args,
            cwd=self.base_dir,  # the binaries must be able to enter their cwd
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


class MlflowServer(_Service):
    """``mlflow server`` in its own process group on 127.0.0.1.

    ``backend_store_uri`` is any SQLAlchemy URL MLflow accepts (sqlite or
    PostgreSQL); ``None`` means a sqlite file in the server's temp folder.
    Artifacts are proxied into that temp folder, which is removed on exit.
    ``port``: listen there (a server brought back at the URL of one that was
    stopped); default: a free port.
    """

    def __init__(self, backend_store_uri: str | None = None, *, startup_timeout: float = 60.0,
                 port: int | None = None) -> None:
        self.backend_store_uri = backend_store_uri
        self.startup_timeout = startup_timeout
        self.requested_port = port
        self.port = 0
        self.url = ""
        self.base_dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "server.log"

    def log_tail(self, limit: int = 4000) -> str:
        return _tail(self.log_file, limit)

    def start(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
        backend = self.backend_store_uri or f"sqlite:///{self.base_dir / 'mlflow.db'}"
        artifacts = self.base_dir / "artifacts"
        artifacts.mkdir()
        self.port = self.requested_port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server",
                 "--backend-store-uri", backend,
                 "--artifacts-destination", str(artifacts),
                 "--host", HOST, "--port", str(self.port), "--workers", "1"],
                cwd=self.base_dir,  # keep stray ./mlruns or ./mlflow.db out of the repo
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_healthy(self.url, self.proc, self.log_file, self.startup_timeout)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 5 s, remove the temp folder."""
        if self.proc is not None:
            pgid = self.proc.pid  # start_new_session: the server leads its own group
            _killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            _killpg(pgid, signal.SIGKILL)  # also reaps workers that outlived the leader
            self.proc.wait()
            self.proc = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
