"""The ``stack`` fixture: workers and beat as subprocesses, the sandbox as the APIs.

``private_stack`` is the same on a PostgreSQL server and a RabbitMQ node of the
test run's own (``tests/system/reliability/private_services.py``), for tests that stop and start
them: the machine's services are never restarted under anyone. They are
started once per session, and only when a test asks for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import TEST_QUEUE, WorkerProcess, migrate, truncate_all
from tests.support.sandbox_fixture import Sandbox
from tests.system.reliability.harness import FAST, BeatProcess
from tests.system.reliability.private_services import PrivatePostgres, PrivateRabbitMQ


class Stack:
    """Starts the processes of one test with the same environment."""

    def __init__(
        self,
        url: str,
        sandbox: Sandbox,
        start_worker: Callable[..., Any],
        tmp_path: Path,
        services: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.sandbox = sandbox
        self._start_worker = start_worker
        self.tmp_path = tmp_path
        self.services = services or {}  # DATABASE_URL / CELERY_BROKER_URL overrides
        self.beats: list[BeatProcess] = []
        self.restarts = 0

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.sandbox.env(), **FAST, **self.services, **extra}

    def worker(self, concurrency: int = 2, **env: str) -> WorkerProcess:
        worker: WorkerProcess = self._start_worker(concurrency=concurrency, **self.env(**env))
        return worker

    def restart(self, worker: WorkerProcess) -> None:
        """Start a killed worker again, on a fresh log so readiness is really awaited."""
        self.restarts += 1
        worker.log_path = worker.log_path.with_name(f"{worker.log_path.stem}-r{self.restarts}.log")
        worker.start()

    def beat(self, **env: str) -> BeatProcess:
        beat = BeatProcess(self.tmp_path, **self.env(**env)).start()
        self.beats.append(beat)
        return beat


@pytest.fixture
def stack(
    committed_db: str, worker_factory: Callable[..., Any], sandbox: Sandbox, tmp_path: Path
) -> Iterator[Stack]:
    s = Stack(committed_db, sandbox, worker_factory, tmp_path)
    yield s
    for beat in s.beats:
        beat.stop()


# -- private services ------------------------------------------------------------


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test run (initdb in a temp dir, its own port)."""
    try:
        pg = PrivatePostgres()
    except Exception as exc:
        pytest.skip(f"cannot start a private PostgreSQL here: {exc}")
    try:
        pg.init()
        pg.start()
    except Exception as exc:
        pg.destroy()
        pytest.skip(f"cannot start a private PostgreSQL here: {str(exc)[:600]}")
    yield pg
    pg.destroy()


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of this test run (own node name, ports, data and cookie)."""
    try:
        node = PrivateRabbitMQ()
    except Exception as exc:
        pytest.skip(f"cannot start a private RabbitMQ here: {exc}")
    try:
        node.start()
    except Exception as exc:
        node.destroy()
        pytest.skip(f"cannot start a private RabbitMQ here: {str(exc)[:600]}")
    yield node
    node.destroy()


@pytest.fixture(scope="session")
def private_database_url(private_postgres: PrivatePostgres) -> Iterator[str]:
    """A database on the private server, migrated with Alembic like the suite's."""
    admin = create_engine(private_postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "backfill_test"'))
    admin.dispose()
    url = private_postgres.url("backfill_test")
    migrate(url)
    yield url
    from backfill.db import get_engine

    get_engine(url).dispose()


def purge(broker_url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker_url) as conn, contextlib.suppress(Exception):  # not declared yet
        conn.channel().queue_purge(queue)


class PrivateStack(Stack):
    """A ``Stack`` on the private services, which the test may stop and start."""

    postgres: PrivatePostgres
    rabbitmq: PrivateRabbitMQ
    queue: str  # the task queue, on ``rabbitmq``


@pytest.fixture
def private_stack(
    private_postgres: PrivatePostgres,
    private_database_url: str,
    private_rabbitmq: PrivateRabbitMQ,
    sandbox: Sandbox,
    tmp_path: Path,
) -> Iterator[PrivateStack]:
    """``stack`` on the private PostgreSQL and RabbitMQ: every process it starts
    (and every ``stack.url`` query of the test) uses them, never the machine's."""
    from backfill.db import get_engine

    url, broker = private_database_url, private_rabbitmq.url
    truncate_all(get_engine(url))
    purge(broker, TEST_QUEUE)
    services = {"DATABASE_URL": url, "CELERY_BROKER_URL": broker}
    workers: list[WorkerProcess] = []

    def start_worker(concurrency: int = 2, **env: str) -> WorkerProcess:
        log = tmp_path / f"worker{len(workers)}.log"
        worker = WorkerProcess(TEST_QUEUE, log, concurrency, **{**services, **env})
        workers.append(worker)
        return worker.start()

    s = PrivateStack(url, sandbox, start_worker, tmp_path, services)
    s.postgres, s.rabbitmq, s.queue = private_postgres, private_rabbitmq, TEST_QUEUE
    yield s
    for beat in s.beats:
        beat.stop()
    for worker in workers:
        worker.stop()
    purge(broker, TEST_QUEUE)
    truncate_all(get_engine(url))
