"""Engine and session factory, created lazily once per process.

A process that forks (Celery's prefork pool) gets a fresh engine in the child:
the engine is keyed by pid, so pooled connections never cross a fork.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from backfill.config import get_settings

_engines: dict[tuple[int, str], Engine] = {}
_factories: dict[tuple[int, str], sessionmaker[Session]] = {}


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for ``url`` (default: ``DATABASE_URL``)."""
    url = url or get_settings().database_url
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        engine = create_engine(
            url,
            pool_pre_ping=True,  # survive a PostgreSQL restart without manual action
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": 10, "application_name": "backfill"},
        )
        _engines[key] = engine
    return engine


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """A sessionmaker bound to the process's engine."""
    url = url or get_settings().database_url
    key = (os.getpid(), url)
    factory = _factories.get(key)
    if factory is None:
        factory = sessionmaker(get_engine(url), expire_on_commit=False)
        _factories[key] = factory
    return factory


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """``with transaction() as s:`` -- a session in one transaction, committed on success."""
    with session_factory(url)() as session, session.begin():
        yield session


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests, shutdown)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()


@contextmanager
def unit_of_work(factory: Callable[[], Session] | None = None) -> Iterator[Session]:
    """A session (from ``factory``, default the process's) committed when the
    block succeeds, rolled back otherwise.

    Unlike :func:`transaction`, the work inside may commit on its own, as
    :func:`backfill.scheduler.schedule` does before it publishes.
    """
    session = (factory or session_factory())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def db_now(session: Session | Connection) -> dt.datetime:
    """The database's clock, read now (not at transaction start): every process
    agrees on it, and a long transaction does not make it stale."""
    now = session.scalar(select(func.clock_timestamp()))
    assert now is not None
    return now


def create_database(url: str) -> bool:
    """Create the database ``url`` names when it does not exist; True when it was
    created. A database that answers is left alone without touching the server's
    ``postgres`` database (a hosted database may not let us in there)."""
    target = make_url(url)
    probe = create_engine(target, poolclass=NullPool)
    try:
        with probe.connect():
            return False
    except OperationalError as exc:
        # invalid_catalog_name (psycopg's connect error often carries no SQLSTATE)
        missing = f'database "{target.database}" does not exist'
        if getattr(exc.orig, "sqlstate", None) != "3D000" and missing not in str(exc.orig):
            raise
    finally:
        probe.dispose()
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = conn.dialect.identifier_preparer.quote(target.database or "")
            conn.execute(text(f"CREATE DATABASE {name}"))
            return True
    finally:
        admin.dispose()
