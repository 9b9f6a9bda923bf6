"""The unit tier: no PostgreSQL, no RabbitMQ, no sandbox server, no subprocess.

``scripts/test unit`` runs this directory without starting any service, so the
rule is enforced rather than trusted:

* a unit test that asks for a fixture of the services (the database, the queue,
  the sandbox, a worker) fails before it runs, naming the fixture;
* any network connection or subprocess a unit test attempts raises at once,
  instead of hanging on a service that is not there.

A test that needs any of that belongs in tests/integration (in-process) or
tests/system (real processes).
"""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest

SERVICE_FIXTURES = frozenset(
    {
        "database_url",
        "engine",
        "session",
        "committed_db",
        "queue_name",
        "worker_factory",
        "sandbox",
        "sandbox_server",
    }
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse a unit test that asks for a service fixture (directly or through another)."""
    wanted = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if wanted:
        pytest.fail(
            f"{item.nodeid} is in tests/unit but uses {', '.join(sorted(wanted))}: "
            "move it to tests/integration or tests/system",
            pytrace=False,
        )


def _refused(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(
            f"a unit test tried to {what} ({args[1:] if len(args) > 1 else args}): "
            "unit tests use no services and start no processes"
        )

    return refuse


@pytest.fixture(autouse=True)
def _no_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection (TCP, Unix socket; PostgreSQL's libpq too) and no subprocess
    during a unit test."""
    import psycopg

    monkeypatch.setattr(socket.socket, "connect", _refused("open a connection"))
    monkeypatch.setattr(socket.socket, "connect_ex", _refused("open a connection"))
    # libpq opens its own sockets, below Python's: refuse it at psycopg's door
    monkeypatch.setattr(psycopg, "connect", _refused("connect to PostgreSQL"))
    monkeypatch.setattr(psycopg.Connection, "connect", _refused("connect to PostgreSQL"))
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refused("start a process"))
