"""Test harness: real PostgreSQL, real RabbitMQ, real Celery workers.

The tests are in three tiers (``scripts/test unit|integration|system``):
``tests/unit`` needs no service at all (its conftest refuses any), ``tests/integration``
uses PostgreSQL, RabbitMQ and the sandbox in-process, ``tests/system`` starts real
processes (``tests/system/reliability``: the slow end-to-end runs). Helpers shared by
the tiers are in ``tests/support``; the fixtures below serve them all.

* A database of its own per test run, migrated with Alembic.
* ``session``: a test inside a transaction that is rolled back at teardown
  (SQLAlchemy's "join an external transaction" recipe).
* ``committed_db``: for tests that need real commits (concurrency, workers);
  every table is emptied before and after.
* ``queue_name``: a uniquely named RabbitMQ queue for this run, deleted at the end.
* ``worker``: a real ``celery -A backfill worker`` subprocess on that queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

pytest_plugins = ["tests.support.sandbox_fixture"]
ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "TEST_ADMIN_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/postgres"
)
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
TEST_DB = f"backfill_test_{RUN_ID}"
TEST_QUEUE = f"backfill-test-{RUN_ID}"
# The enrichment hand-off publishes to a queue of this run's own, never to the
# machine's backfill.enrichment (deleted at the end with the task queue).
TEST_ENRICHMENT_QUEUE = f"backfill-enrichment-test-{RUN_ID}"

# The one place the tests set the environment: every process they start (worker,
# beat, web, CLI) reads its settings from here, exactly as in production.
os.environ["DATABASE_URL"] = str(make_url(ADMIN_URL).set(database=TEST_DB).render_as_string(False))
os.environ["BACKFILL_TASK_QUEUE"] = TEST_QUEUE
os.environ["ENRICHMENT_QUEUE"] = TEST_ENRICHMENT_QUEUE
os.environ.setdefault("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
os.environ["BACKFILL_CRON_SECRET"] = "test-cron-secret"
TABLES = (
    "auth_failures",
    "candidates",
    "generations",
    "handoffs",
    "month_attempts",
    "books",
    "lookup_cache",
    "quota_usage",
    "api_call_outcomes",
    "control_state",
    "backfill_log",
)


def create_database(name: str) -> str:
    """Create an empty database ``name`` (dropping any left over) and return its URL."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(False)


def drop_database(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.cmd_opts = None
    cfg.attributes["configure_logger"] = False
    return cfg


def migrate(url: str, revision: str = "head", down: bool = False) -> None:
    from alembic import command

    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    from backfill.config import get_settings

    url = create_database(TEST_DB)
    migrate(url)
    get_settings.cache_clear()
    yield url
    from backfill.db import dispose_engines

    dispose_engines()
    drop_database(TEST_DB)


@pytest.fixture(scope="session")
def engine(database_url: str):  # type: ignore[no-untyped-def]
    from backfill.db import get_engine

    return get_engine(database_url)


@pytest.fixture
def session(engine) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    """A session inside a transaction rolled back at teardown; its commits are savepoints."""
    conn = engine.connect()
    outer = conn.begin()
    sess = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield sess
    finally:
        sess.close()
        outer.rollback()
        conn.close()


def truncate_all(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def committed_db(engine, database_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The test database, emptied before and after: for tests whose work must commit."""
    truncate_all(engine)
    yield database_url
    truncate_all(engine)


@pytest.fixture(scope="session")
def queue_name() -> Iterator[str]:
    """This run's RabbitMQ queue; deleted (with its messages) at the end of the run."""
    yield TEST_QUEUE
    from kombu import Connection

    with Connection(os.environ["CELERY_BROKER_URL"]) as conn:
        channel = conn.channel()
        try:
            channel.queue_delete(TEST_QUEUE)
            channel.exchange_delete(TEST_QUEUE)
            channel.queue_delete(TEST_ENRICHMENT_QUEUE)
        except Exception:
            pass


def purge_queue(name: str) -> int:
    from kombu import Connection

    with Connection(os.environ["CELERY_BROKER_URL"]) as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_purge(name) or 0)
        except Exception:
            return 0


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class WorkerProcess:
    """A real ``celery worker`` subprocess; ``restart()`` after a kill."""

    def __init__(self, queue: str, log_path: Path, concurrency: int = 2, **env: str) -> None:
        self.queue = queue
        self.log_path = log_path
        self.concurrency = concurrency
        self.env = subprocess_env(**env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"

    def start(self, timeout: float = 60) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "backfill",
                "worker",
                "-Q",
                self.queue,
                "-c",
                str(self.concurrency),
                "--pool",
                "prefork",
                "-n",
                self.name,
                "--loglevel",
                "INFO",
                "--without-mingle",
                "-E",  # events: Flower and the monitoring see tasks
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes the pool too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            if "ready." in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children)."""
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def worker_factory(committed_db: str, queue_name: str, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start real worker subprocesses on this run's queue; all stopped at teardown."""
    purge_queue(queue_name)
    started: list[WorkerProcess] = []

    def start(concurrency: int = 2, **env: str) -> WorkerProcess:
        w = WorkerProcess(queue_name, tmp_path / f"worker{len(started)}.log", concurrency, **env)
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.stop()
    purge_queue(queue_name)
