"""The project's own test session: one module maker's secret for every process it starts,
and a PostgreSQL server for the tests of several clouds on one store.

Devices and clouds must agree on the maker's secret (impfactory/maker.py); a fresh
one per session keeps the suite away from the user's own secret file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from impfactory.maker import ENV, new_secret
from impfactory.tools.pg_server import PostgresServer, PostgresUnavailable, find_postgres

os.environ.setdefault(ENV, new_secret())

# CI installs PostgreSQL (.ci/run); there its absence must fail, not quietly skip
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of the session's own (Debian's postgresql package, a temporary
    cluster on a free loopback port, stopped at the end)."""
    if find_postgres() is None and not IN_CI:
        pytest.skip("outside CI, PostgreSQL is optional")
    server = PostgresServer()
    try:
        url = server.start()
    except PostgresUnavailable as err:
        if IN_CI:
            raise
        pytest.skip(str(err))
    try:
        yield url
    finally:
        server.stop()


def fresh_postgres(postgres_url: str, name: str) -> str:
    """URL of an empty database ``name`` on the session's server (dropped if it was there)."""
    from impfactory.cloud.store.postgres import PgConnection

    admin = PgConnection(postgres_url)
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    return postgres_url.rsplit("/", 1)[0] + "/" + name


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-cases", type=int, default=3000, metavar="N",
                     help="cases per decoder in tests/test_fuzz.py (3000; issue 13 asks "
                          "100000 for a soak)")
