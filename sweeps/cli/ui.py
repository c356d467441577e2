"""Start the MLflow UI on 127.0.0.1 against the project's store.

    python -m sweeps.ui                   # http://127.0.0.1:5000
    python -m sweeps.ui --port 5001

The server runs in its own process group: Ctrl-C, SIGTERM or SIGHUP to this command stops
the server and its workers with it (``sweeps.cli.child_group``), exit status 130, 143, 129.
"""

from __future__ import annotations

import os
import sys

from sweeps.cli.child_group import run_in_group
from sweeps.cli.common import Parser, guarded
from sweeps.errors import UsageError
from sweeps.storage.backends import DEFAULT_TRACKING_URI

__all__ = ["build_parser", "main", "ui_command"]


def build_parser() -> Parser:
    p = Parser(prog="sweeps.ui", description=__doc__.split("\n")[0])
    p.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI,
                   help=f"backend store (default: {DEFAULT_TRACKING_URI})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    return p


def ui_command(tracking_uri: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
            "--host", host, "--port", str(port), "--workers", "1"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("sweeps.ui", lambda: _serve(args.tracking_uri, args.host, args.port))


def _serve(tracking_uri: str, host: str, port: int) -> int:
    if not 0 < port < 65536:
        raise UsageError("port", port, "use 1-65535")
    if tracking_uri.startswith("sqlite:///"):
        path = tracking_uri.removeprefix("sqlite:///")
        if not os.path.exists(path):
            raise UsageError("tracking-uri", tracking_uri, "no such database; run a sweep first")
    scope = "this machine only" if host == "127.0.0.1" else "reachable from the network"
    print(f"MLflow UI at http://{host}:{port} ({scope}); Ctrl-C stops it", file=sys.stderr)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return run_in_group(ui_command(tracking_uri, host, port), env)

