"""Issue 5, scenario 11: the MLflow UI binds 127.0.0.1 unless told otherwise and says so;
passwords in storage and tracking URLs appear in no output, tag, param, export or artifact;
an exported JSON is plain data that nothing executes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg2
import pytest

from sweeps.cli import ui
from tests.servers import PostgresCluster

from .helpers import Processes, load_study, mlflow_runs

SECRET = "s3cret"


def test_the_ui_binds_loopback_by_default_and_says_so(processes: Processes,
                                                      tmp_path: Path) -> None:
    done = processes.run(tmp_path, "--help", module="sweeps.ui", timeout=60)
    assert done.rc == 0
    help_text = " ".join(done.stdout.split())
    assert "default: 127.0.0.1" in help_text and "this machine only" in help_text
    args = ui.build_parser().parse_args([])
    command = ui.ui_command(args.tracking_uri, args.host, args.port)
    assert command[command.index("--host") + 1] == "127.0.0.1"


@pytest.fixture
def password_urls(postgres: PostgresCluster) -> tuple[str, str]:
    """Study storage and tracking store URLs that carry a password (the test cluster trusts
    127.0.0.1, so the password is set for real but not needed to connect)."""
    conn = psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user,
                            dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"ALTER USER {postgres.user} PASSWORD '{SECRET}'")
    finally:
        conn.close()
    urls = []
    for prefix in ("study", "tracking"):
        plain = postgres.create_database(f"{prefix}_{uuid.uuid4().hex[:8]}")
        urls.append(plain.replace(f"//{postgres.user}@", f"//{postgres.user}:{SECRET}@"))
    return urls[0], urls[1]


@pytest.mark.slow
def test_passwords_in_urls_appear_nowhere(password_urls: tuple[str, str], workdir: Path,
                                          processes: Processes) -> None:
    storage, tracking = password_urls
    where = ["--study", "secret", "--storage", storage]
    sweep = processes.run(workdir, *where, "--tracking-uri", tracking, "--n-trials", "3",
                          "--epochs", "100", "--optimizers", "adam,sgd", "--schedulers",
                          "none", "--export", "best.json")  # not --quiet: logs included
    assert sweep.rc == 0, sweep.stderr[-3000:]
    exported = processes.run(workdir, *where, "--out", "-", module="sweeps.export")
    assert exported.rc == 0, exported.stderr
    missing = processes.run(workdir, "--study", "nope", "--storage", storage, "--out", "x.json",
                            module="sweeps.export")
    assert missing.rc == 2 and "***" in missing.stderr  # the URL is named, redacted

    texts = {"export file": (workdir / "best.json").read_text(),
             "export stdout": exported.stdout}
    for name, done in (("sweep", sweep), ("export", exported), ("failed export", missing)):
        texts[f"{name} stdout"], texts[f"{name} stderr"] = done.stdout, done.stderr
    for name in ("export file", "export stdout"):
        document = json.loads(texts[name])  # plain JSON data
        assert document["objective"]["name"] == "rebalance"
    runs = mlflow_runs(tracking, "secret")
    parent = load_study(storage, "secret").user_attrs["mlflow_parent_run_id"]
    assert [r.info.run_id for r in runs.parents] == [parent] and len(runs.children) == 3
    for run in runs.all:
        texts[f"run {run.info.run_name} params"] = json.dumps(run.data.params)
        texts[f"run {run.info.run_name} tags"] = json.dumps(run.data.tags)
        for artifact in runs.client.list_artifacts(run.info.run_id):
            if artifact.path.endswith((".csv", ".json", ".txt")):
                local = runs.client.download_artifacts(run.info.run_id, artifact.path,
                                                       str(workdir))
                texts[f"artifact {artifact.path}"] = Path(local).read_text()
    assert "artifact trials.csv" in texts and "artifact best_params.json" in texts
    leaks = [name for name, text in texts.items() if SECRET in text]
    assert not leaks


def test_an_exported_json_naming_a_dangerous_callable_runs_nothing(
        tmp_path: Path, processes: Processes) -> None:
    marker = tmp_path / "pwned"
    document = {
        "format": "lrsweep.best/1", "study": "s", "trial": 0, "value": 1.0,
        "objective": {"name": "os:system", "args": {"command": f"touch {marker}"}},
        "epochs": 10, "seed": 0,
        "params": {"optimizer": "sgd", "lr": 0.01, "scheduler": "none"},
    }
    (tmp_path / "evil.json").write_text(json.dumps(document))

    done = processes.run(tmp_path, "--params", "evil.json", "--no-track", module="sweeps.train",
                         timeout=60)

    assert done.rc == 2
    assert "Traceback" not in done.stderr
    assert not marker.exists(), "the JSON file ran a shell command"
