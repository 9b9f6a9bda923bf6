"""Scale-out: three worker hosts, each in its own network namespace; one dies mid-run.

The README's claim under test: "Workers need only DATABASE_URL, CELERY_BROKER_URL
and the API keys; add machines by starting more workers." Each "host" is a Linux
network namespace (``tests/system/reliability/netns.py``) joined to a bridge of this test; the
private PostgreSQL, the private RabbitMQ and the sandbox listen on the bridge
address only, and every process of the test -- the three workers, beat (in a
namespace of its own) and the test's own queries -- reaches them over it. A
host's loopback is its own: a URL naming 127.0.0.1 would find nothing there, so a
worker that leans on anything but its environment's URLs cannot work.

Run: 60 months (2020-01 .. 2024-12), three hosts with ``celery worker -c 2``
each, beat dispatching. Once the victim host has months running, every process
in its namespace is SIGKILLed (``ip netns pids | kill -9``: the machine died).
RabbitMQ re-queues its unacknowledged messages, the surviving hosts' workers take
them up, and ``months.begin`` closes the dead host's attempts ``lost``.

Checked: every month completed; no ISBN stored twice and no month's candidates
duplicated; the dead host's unfinished attempts all ended ``lost``/``deferred``
and each such month completed on a surviving host; ``sum(retry_count)`` is at
most the number of attempts the kill interrupted; PostgreSQL and RabbitMQ saw
the workers connect from their namespaces' addresses.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import ROOT, migrate
from tests.support.sandbox_fixture import Sandbox
from tests.system.reliability import netns
from tests.system.reliability.harness import (
    FAST,
    attempt_outcomes,
    book_checks,
    print_figures,
    query,
    seed_range,
    status_counts,
    wait_settled,
)
from tests.system.reliability.private_services import (
    PrivatePostgres,
    PrivateRabbitMQ,
    _free_port_on,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WORKERS = ("w1", "w2", "w3")
VICTIM = "w2"
FIRST, LAST = (2020, 1), (2024, 12)
# Short leases (the reaper may take part too); small scheduler batches so a claimed
# month never waits in the queue longer than its lease; every seeded month settled.
ENV = {
    "BACKFILL_LEASE_SECONDS": "8",
    "BACKFILL_BATCH_SIZE": "6",
    "BACKFILL_SETTLE_MONTHS": "0",
    "BACKFILL_YEAR_START": str(FIRST[0]),
    "BACKFILL_YEAR_END": str(LAST[0]),
}
# No faults, unlimited plans; a little latency so a kill lands mid-month.
SANDBOX_CONFIG: dict[str, Any] = {
    "isbndb_rate_per_second": 1000,
    "isbndb_daily_limit": None,
    "openlibrary_rate_identified": 1000,
    "openlibrary_rate_anonymous": 1000,
    "googlebooks_keyless_daily_limit": None,
    "latency_ms": {"gemini": 300, "xai": 300},
}
# The only variables of the test process a namespaced process inherits.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")


@dataclass
class Cluster:
    """The network, the services on its bridge, and the processes of each host."""

    net: netns.Network
    tmp_path: Path
    postgres: PrivatePostgres | None = None
    rabbitmq: PrivateRabbitMQ | None = None
    sandbox_proc: subprocess.Popen[bytes] | None = None
    sandbox: Sandbox | None = None
    url: str = ""
    queue: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """A namespaced process's whole environment: every service on the bridge."""
        assert self.rabbitmq is not None and self.sandbox is not None
        env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
                "DATABASE_URL": self.url,
                "CELERY_BROKER_URL": self.rabbitmq.url,
                "BACKFILL_TASK_QUEUE": self.queue,
                "ENRICHMENT_QUEUE": f"{self.queue}-enrichment",
                **self.sandbox.env(),
                **FAST,
                **ENV,
            }
        )
        leaked = {k: v for k, v in env.items() if "127.0.0.1" in v or "localhost" in v}
        assert not leaked, f"a namespaced process would be sent to loopback: {leaked}"
        return env

    def start(self, host: str, args: list[str]) -> subprocess.Popen[bytes]:
        """``python -m celery -A backfill ARGS`` inside ``host``'s namespace, in a
        process group of its own."""
        cmd = self.net.command(host, [sys.executable, "-m", "celery", "-A", "backfill", *args])
        with (self.tmp_path / f"{host}.log").open("ab") as log:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.procs[host] = proc
        return proc

    def log(self, host: str) -> str:
        path = self.tmp_path / f"{host}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def await_ready(self, hosts: tuple[str, ...], timeout: float = 90) -> None:
        """Until every worker of ``hosts`` logged ``ready.``."""
        deadline = time.monotonic() + timeout
        waiting = list(hosts)
        while waiting:
            for host in list(waiting):
                if self.procs[host].poll() is not None:
                    raise RuntimeError(f"worker {host} exited: {self.log(host)[-3000:]}")
                if "ready." in self.log(host):
                    waiting.remove(host)
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready: {waiting}: {self.log(waiting[0])[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Every host process stopped (SIGTERM, then SIGKILL of its group)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 15)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(5)


def _start_sandbox(host: str, log_path: Path, timeout: float = 20) -> tuple[Any, Sandbox]:
    """``python -m backfill.sandbox --host HOST`` on a free port of HOST."""
    port = _free_port_on(host)
    cmd = [sys.executable, "-m", "backfill.sandbox", "--host", host, "--port", str(port),
           "--config", json.dumps(SANDBOX_CONFIG)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    handle = Sandbox(f"http://{host}:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{handle.url}/_sandbox/health", timeout=1).ok:
                return proc, handle
        time.sleep(0.1)
    raise RuntimeError(f"sandbox not answering on {host}:{port}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Bridge + namespaces ``w1..w3`` and ``beat``; PostgreSQL, RabbitMQ and the
    sandbox on the bridge address. Everything is removed at teardown, pass or fail."""
    reason = netns.unavailable()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    net = netns.Network()
    c = Cluster(net, tmp_path, queue=f"backfill-multihost-{net.tag}")
    try:
        net.create([*WORKERS, "beat"])
        c.postgres = PrivatePostgres(host=net.gateway).init()
        c.postgres.start()
        admin = create_engine(c.postgres.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "backfill_multihost"'))
        admin.dispose()
        c.url = c.postgres.url("backfill_multihost")
        migrate(c.url)
        c.rabbitmq = PrivateRabbitMQ(host=net.gateway).start()
        c.sandbox_proc, c.sandbox = _start_sandbox(net.gateway, tmp_path / "sandbox.log")
        yield c
    finally:
        with contextlib.suppress(Exception):
            c.stop()
        net.destroy()
        if c.sandbox_proc is not None:
            c.sandbox_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.sandbox_proc.wait(10)
        if c.url:
            from backfill.db import get_engine

            with contextlib.suppress(Exception):
                get_engine(c.url).dispose()
        if c.rabbitmq is not None:
            c.rabbitmq.destroy()
        if c.postgres is not None:
            c.postgres.destroy()
        assert net.leftovers() == [], f"network not removed: {net.leftovers()}"


def _running_on(url: str, host: str) -> list[str]:
    """The months ``host``'s worker is in the middle of right now."""
    rows = query(
        url,
        """
        SELECT l.year, l.month FROM month_attempts a JOIN backfill_log l ON l.id = a.backfill_id
        WHERE a.outcome = 'running' AND a.worker LIKE :p ORDER BY 1, 2
        """,
        p=f"{host}@%",
    )
    return [f"{y:04d}-{m:02d}" for y, m in rows]


def _clients(c: Cluster) -> dict[str, list[str]]:
    """The addresses PostgreSQL and RabbitMQ see their clients connect from."""
    assert c.rabbitmq is not None
    pg = query(
        c.url,
        "SELECT DISTINCT host(client_addr) FROM pg_stat_activity"
        " WHERE datname = current_database() AND client_addr IS NOT NULL",
    )
    amqp = c.rabbitmq.ctl("-q", "list_connections", "--no-table-headers", "peer_host").split()
    return {"postgres": sorted(r[0] for r in pg), "rabbitmq": sorted(set(amqp))}


def _host_of(worker: str | None) -> str:
    return (worker or "?").split("@")[0]


def test_a_host_dies_and_the_others_take_over(cluster: Cluster) -> None:
    c, url = cluster, cluster.url
    assert c.sandbox is not None
    months = seed_range(url, FIRST, LAST)
    assert months == 60
    started = time.monotonic()
    for host in WORKERS:
        worker = ["worker", "-Q", c.queue, "-c", "2", "--pool", "prefork", "-n", f"{host}@%h"]
        c.start(host, [*worker, "--loglevel", "INFO", "--without-mingle", "-E"])
    c.await_ready(WORKERS)
    c.start("beat", ["beat", "--schedule", str(c.tmp_path / "beat-schedule"), "--loglevel", "INFO"])

    # Once the run is under way (every host connected: who the services see),
    # kill the victim host the moment it has months in flight.
    deadline = time.monotonic() + 90
    clients: dict[str, list[str]] = {}
    while True:
        assert time.monotonic() < deadline, f"no month ran on {VICTIM}: {status_counts(url)}"
        assert c.procs["beat"].poll() is None, c.log("beat")[-3000:]
        done = status_counts(url).get("completed", 0)
        if done >= 3 and not clients:
            clients = _clients(c)  # rabbitmqctl: a second or two, so not in the kill's path
            continue
        in_flight = _running_on(url, VICTIM) if clients and done >= 8 else []
        if in_flight:
            break
        time.sleep(0.05)
    killed_pids = c.net.kill(VICTIM)
    killed_at = query(url, "SELECT clock_timestamp()")[0][0]
    completed_at_kill = done

    counts = wait_settled(url, timeout=150)
    elapsed = time.monotonic() - started

    books = book_checks(url)
    (dup_candidates,) = query(
        url,
        """
        SELECT count(*) FROM (
            SELECT 1 FROM candidates WHERE superseded_at IS NULL
            GROUP BY backfill_id, lower(title), authors HAVING count(*) > 1) d
        """,
    )[0]
    attempts = query(
        url,
        """
        SELECT l.year, l.month, a.id, a.worker, a.outcome, a.started_at
        FROM month_attempts a JOIN backfill_log l ON l.id = a.backfill_id ORDER BY a.id
        """,
    )
    outcomes = attempt_outcomes(url)
    retries = int(query(url, "SELECT coalesce(sum(retry_count), 0) FROM backfill_log")[0][0])
    per_host = {h: 0 for h in WORKERS}
    for a in attempts:
        if a.outcome == "completed":
            per_host[_host_of(a.worker)] = per_host.get(_host_of(a.worker), 0) + 1
    interrupted = [a for a in attempts if _host_of(a.worker) == VICTIM and a.outcome != "completed"]
    interrupted_months = sorted({f"{a.year:04d}-{a.month:02d}" for a in interrupted})
    taken_over: dict[str, str] = {}
    for a in attempts:
        label = f"{a.year:04d}-{a.month:02d}"
        if label in interrupted_months and a.outcome == "completed":
            taken_over[label] = str(a.worker)
    after_kill = [a for a in attempts if _host_of(a.worker) == VICTIM and a.started_at > killed_at]
    print_figures(
        "three hosts, one killed",
        network=f"bridge {c.net.bridge} {c.net.gateway}/24, hosts "
        + ", ".join(f"{h.name}={h.address}" for h in c.net.hosts.values()),
        months=months,
        killed=f"{VICTIM} ({len(killed_pids)} processes) after {completed_at_kill} months",
        victim_in_flight=in_flight,
        victim_interrupted=f"{len(interrupted)} attempts: "
        + ", ".join(f"{f'{a.year:04d}-{a.month:02d}'}:{a.outcome}" for a in interrupted),
        taken_over_by=taken_over,
        completed_per_host=per_host,
        by_status=counts,
        attempts=outcomes,
        retry_count_total=retries,
        books=f"{books['books']} ({books['duplicates']} duplicates)",
        duplicate_candidates=dup_candidates,
        clients_seen=clients,
        seconds=round(elapsed, 1),
    )

    # The services saw the workers where they live: in their namespaces.
    worker_addrs = {c.net.hosts[h].address for h in WORKERS}
    assert worker_addrs <= set(clients["postgres"]), clients
    assert worker_addrs <= set(clients["rabbitmq"]), clients
    assert "127.0.0.1" not in clients["postgres"] + clients["rabbitmq"], clients
    # Every month done, nothing twice.
    assert counts == {"completed": months}, f"a month did not complete: {counts}"
    assert outcomes["completed"] == months and outcomes.get("running", 0) == 0, outcomes
    assert books["duplicates"] == 0
    assert books["mismatched_months"] == [], books["mismatched_months"]
    assert dup_candidates == 0
    # The dead host's unfinished attempts were closed, and others finished its months.
    assert interrupted, f"the kill interrupted nothing on {VICTIM}"
    assert {a.outcome for a in interrupted} <= {"lost", "deferred"}, interrupted
    assert set(taken_over) == set(interrupted_months), (taken_over, interrupted_months)
    assert all(_host_of(w) != VICTIM for w in taken_over.values()), taken_over
    assert set(in_flight) <= set(interrupted_months) | {
        f"{a.year:04d}-{a.month:02d}"
        for a in attempts
        if _host_of(a.worker) == VICTIM and a.outcome == "completed"
    }
    assert after_kill == [], after_kill  # the dead host did nothing more
    assert all(per_host[h] > 0 for h in WORKERS if h != VICTIM), per_host
    # Only the kill spent retries: at most one per interrupted attempt.
    assert retries <= len(interrupted), (retries, interrupted)
