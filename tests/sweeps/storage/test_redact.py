"""Passwords in storage and tracking URLs are masked in every message; nothing else changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweeps.errors import UsageError
from sweeps.storage.backends import open_storage, redact

REPO = Path(__file__).resolve().parents[3]

# URLs without a password come back exactly as given (not re-rendered).
UNCHANGED = [
    "sqlite:///mlruns/optuna.db",
    "sqlite:////srv/a:b@c/optuna.db",  # a path holding ':' and '@'
    "sqlite:///:memory:",
    "journal:///mlruns/optuna.journal",
    "journal:////srv/a:b@c/optuna.journal",
    "postgresql://lr@db.example/lrsweep",
    "postgresql+psycopg2://lr@db.example:5432/lrsweep?sslmode=require&application_name=x",
    "http://mlflow.example:5000",
    "https://lr@mlflow.example/path?x=1#top",
    "file:///srv/mlruns",
    "mlruns",
    "databricks",
    "",
]

MASKED = [
    ("postgresql://lr:s3cret@db.example:5432/lrsweep",
     "postgresql://lr:***@db.example:5432/lrsweep"),
    ("postgresql+psycopg2://lr:s3cret@127.0.0.1/lrsweep",
     "postgresql+psycopg2://lr:***@127.0.0.1/lrsweep"),
    ("postgresql://lr:s3cret@[::1]:5432/lrsweep", "postgresql://lr:***@[::1]:5432/lrsweep"),
    ("postgresql://lr:@db/lrsweep", "postgresql://lr:***@db/lrsweep"),  # an empty password
    ("postgresql://lr:s3%40cret@db/lrsweep", "postgresql://lr:***@db/lrsweep"),  # quoted '@'
    ("postgresql://lr:s3@cret@db/lrsweep", "postgresql://lr:***@db/lrsweep"),  # unquoted '@'
    ("postgresql://lr:s3/cret@db/lrsweep", "postgresql://lr:***@db/lrsweep"),  # unquoted '/'
    ("postgresql://lr:s3:cret@db/lrsweep", "postgresql://lr:***@db/lrsweep"),
    ("postgresql://lr:s3#cret@db/lrsweep", "postgresql://lr:***@db/lrsweep"),
    ("postgresql://lr:s3cret@db:port/lrsweep", "postgresql://lr:***@db:port/lrsweep"),
    ("mysql://lr:s3cret@db/lrsweep", "mysql://lr:***@db/lrsweep"),  # refused, still masked
    ("weird-scheme://lr:s3cret@host/x", "weird-scheme://lr:***@host/x"),
    ("http://lr:s3cret@mlflow.example:5000", "http://lr:***@mlflow.example:5000"),
    ("https://lr:s3cret@mlflow.example/path?x=1#top",  # a web URL keeps query and fragment
     "https://lr:***@mlflow.example/path?x=1#top"),
]


@pytest.mark.parametrize("url", UNCHANGED)
def test_a_url_without_a_password_is_left_as_given(url: str) -> None:
    assert redact(url) == url


@pytest.mark.parametrize(("url", "shown"), MASKED)
def test_a_password_is_shown_as_stars(url: str, shown: str) -> None:
    assert redact(url) == shown


@given(st.text(min_size=1))
def test_any_password_quoted_as_urls_require_is_masked_in_database_and_web_urls(
        password: str) -> None:
    quoted = quote(password, safe="")
    assert (redact(f"postgresql+psycopg2://lr:{quoted}@db.example:5432/lrsweep")
            == "postgresql+psycopg2://lr:***@db.example:5432/lrsweep")
    assert (redact(f"https://lr:{quoted}@mlflow.example:5000/")
            == "https://lr:***@mlflow.example:5000/")


@pytest.mark.parametrize("url", ["mysql://lr:s3cret@db/lrsweep",
                                 "oracle+cx_oracle://lr:s3cret@db/lrsweep"])
def test_an_unsupported_database_is_refused_with_its_password_masked(url: str) -> None:
    with pytest.raises(UsageError) as refused:
        open_storage(url)
    message = str(refused.value)
    assert refused.value.field == "storage"
    assert "s3cret" not in message and "lr:***@db/lrsweep" in message
    assert "sqlite:///PATH, postgresql://..., or journal:///PATH" in message


def test_an_unreachable_database_is_refused_with_its_password_masked() -> None:
    with pytest.raises(UsageError) as refused:  # nothing listens on port 1
        open_storage("postgresql+psycopg2://lr:s3cret@127.0.0.1:1/lrsweep")
    message = str(refused.value)
    assert "use a reachable database" in message
    assert "s3cret" not in message and "lr:***@127.0.0.1:1/lrsweep" in message


def test_the_storage_package_imports_no_database_library_until_a_url_is_read() -> None:
    code = ("import sys\n"
            "import sweeps.storage.backends, sweeps.storage.sqlite\n"
            "print(sorted(m for m in ('sqlalchemy', 'optuna') if m in sys.modules))\n"
            "sweeps.storage.backends.redact('postgresql://lr:s3cret@db/lrsweep')\n"
            "print('sqlalchemy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.splitlines() == ["[]", "True"]
