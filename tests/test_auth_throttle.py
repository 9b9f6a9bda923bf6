"""Nobody guesses their way in: wrong cron secrets are throttled per client address
(internal API and /login, state shared by every web process), short secrets stop
the web app, and the demo makes a random secret per run.

Time is the database's: lockouts and windows pass by moving the stored
timestamps back, as ``tests/reliability/harness.py`` does for the quota day.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session

from backfill import demo
from backfill.config import ConfigError, load_settings
from backfill.web import create_app
from backfill.web.throttle import MAX_FAILURES
from tests.conftest import ROOT, subprocess_env
from tests.webutil import AUTH, SECRET, free_port

STATS = "/api/internal/backfill-stats"
WRONG = {"X-Cron-Secret": "test-cron-secreT"}
ATTACKER = "10.1.2.3"
OPERATOR = "10.1.2.4"


@pytest.fixture
def app(session: Session) -> Flask:
    return create_app({"TESTING": True, "SESSION_FACTORY": lambda: session})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def api(client: FlaskClient, address: str, headers: dict[str, str]) -> Any:
    return client.get(STATS, headers=headers, environ_base={"REMOTE_ADDR": address})


def login(client: FlaskClient, address: str, secret: str) -> Any:
    return client.post("/login", data={"secret": secret}, environ_base={"REMOTE_ADDR": address})


def row(session: Session, address: str) -> Any:
    return session.execute(
        text("SELECT * FROM auth_failures WHERE address = :a"), {"a": address}
    ).first()


def pass_time(session: Session, address: str, seconds: float) -> None:
    """Make ``seconds`` pass for ``address``'s throttle state (database clock)."""
    session.execute(
        text(
            "UPDATE auth_failures SET window_start = window_start - make_interval(secs => :s),"
            " locked_until = locked_until - make_interval(secs => :s) WHERE address = :a"
        ),
        {"s": seconds, "a": address},
    )


def lock_out(client: FlaskClient, address: str) -> Any:
    """Send wrong secrets until refused; asserts the first MAX_FAILURES get 401."""
    for _ in range(MAX_FAILURES):
        assert api(client, address, WRONG).status_code == 401
    return api(client, address, WRONG)


# -- the internal API


def test_sixth_wrong_secret_in_a_minute_gets_429_and_others_are_not_slowed(
    client: FlaskClient, session: Session
) -> None:
    for _ in range(MAX_FAILURES):
        resp = api(client, ATTACKER, WRONG)
        assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"
    refused = api(client, ATTACKER, WRONG)
    assert refused.status_code == 429
    assert refused.json == {
        "error": {
            "code": "too_many_attempts",
            "message": refused.json["error"]["message"],
            "field": "X-Cron-Secret",
        }
    }
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert "try again in" in refused.json["error"]["message"]

    # The right secret from the locked address is refused too: no guessing oracle.
    right_but_locked = api(client, ATTACKER, AUTH)
    assert right_but_locked.status_code == 429 and "Retry-After" in right_but_locked.headers
    # Another client with the right secret is not slowed at all.
    assert api(client, OPERATOR, AUTH).status_code == 200
    assert row(session, OPERATOR) is None
    # Sending no secret guesses nothing: answered 401 as before, nothing recorded.
    assert api(client, ATTACKER, {}).status_code == 401

    state = row(session, ATTACKER)
    assert (state.failures, state.lockouts) == (MAX_FAILURES, 1)

    pass_time(session, ATTACKER, 60)  # the lockout is over
    assert api(client, ATTACKER, AUTH).status_code == 200


def test_lockouts_double_up_to_an_hour(client: FlaskClient, session: Session) -> None:
    waits = []
    for _ in range(8):
        refused = lock_out(client, ATTACKER)
        assert refused.status_code == 429
        waits.append(int(refused.headers["Retry-After"]))
        pass_time(session, ATTACKER, waits[-1])
    # exact up to the second the requests take
    assert [round(w, -1) for w in waits] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert row(session, ATTACKER).lockouts == 8


def test_the_window_resets_after_a_minute(client: FlaskClient, session: Session) -> None:
    for _ in range(MAX_FAILURES - 1):
        assert api(client, ATTACKER, WRONG).status_code == 401
    pass_time(session, ATTACKER, 61)
    # a fresh window: four more are still only wrong, not a lockout
    for _ in range(MAX_FAILURES - 1):
        assert api(client, ATTACKER, WRONG).status_code == 401
    assert row(session, ATTACKER).failures == MAX_FAILURES - 1
    assert api(client, ATTACKER, AUTH).status_code == 200
    # ... and the fifth in this window locks, as always
    assert api(client, ATTACKER, WRONG).status_code == 401
    assert api(client, ATTACKER, WRONG).status_code == 429


def test_a_quiet_day_forgets_past_lockouts(client: FlaskClient, session: Session) -> None:
    for _ in range(3):
        refused = lock_out(client, ATTACKER)
        pass_time(session, ATTACKER, int(refused.headers["Retry-After"]))
    assert row(session, ATTACKER).lockouts == 3
    pass_time(session, ATTACKER, 86400 + 1)
    refused = lock_out(client, ATTACKER)
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert row(session, ATTACKER).lockouts == 1


def test_database_cost_per_request(client: FlaskClient, session: Session) -> None:
    """No secret: no query. A secret: one primary-key read. A wrong one: plus one upsert."""
    seen: list[str] = []

    def capture(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if "auth_failures" in statement:
            seen.append(statement.split()[0] if "INSERT" not in statement else "INSERT")

    bind = session.connection()
    event.listen(bind, "before_cursor_execute", capture)
    try:
        api(client, OPERATOR, {})
        assert seen == []
        api(client, OPERATOR, AUTH)
        assert seen == ["SELECT"]
        seen.clear()
        api(client, ATTACKER, WRONG)
        assert seen == ["SELECT", "INSERT"]
    finally:
        event.remove(bind, "before_cursor_execute", capture)


# -- /login


def test_login_is_throttled_the_same_way(client: FlaskClient, session: Session) -> None:
    for _ in range(MAX_FAILURES):
        wrong = login(client, ATTACKER, "guess")
        assert wrong.status_code == 401 and "wrong secret" in wrong.get_data(as_text=True)
    refused = login(client, ATTACKER, "guess")
    assert refused.status_code == 429
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert "too many failed attempts" in refused.get_data(as_text=True)
    # the right secret from the locked address does not log in
    right = login(client, ATTACKER, SECRET)
    assert right.status_code == 429 and client.get_cookie("session") is None
    # ... from another address it does
    ok = login(client, OPERATOR, SECRET)
    assert ok.status_code == 302 and client.get_cookie("session") is not None
    # one throttle for both doors: the API refuses the locked address too
    assert api(client, ATTACKER, AUTH).status_code == 429
    assert row(session, ATTACKER).failures == MAX_FAILURES


def test_an_empty_login_form_is_not_counted(client: FlaskClient, session: Session) -> None:
    for _ in range(MAX_FAILURES + 2):
        assert login(client, ATTACKER, "").status_code == 401
    assert row(session, ATTACKER) is None
    assert login(client, ATTACKER, SECRET).status_code == 302


# -- shared by every gunicorn worker, over real HTTP


@pytest.fixture
def clean_throttle(committed_db: str, engine: Engine) -> Iterator[str]:
    """The committed test database with no auth_failures rows before or after."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM auth_failures"))
    yield committed_db
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM auth_failures"))


def _get(port: int, headers: dict[str, str], source: str = "127.0.0.1") -> tuple[int, str | None]:
    # http.client, to choose the source address (any 127/8 address is the loopback)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20, source_address=(source, 0))
    try:
        conn.request("GET", STATS, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Retry-After")
    finally:
        conn.close()


@pytest.mark.slow
def test_concurrent_guesses_across_gunicorn_workers_count_exactly(
    clean_throttle: str, engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--threads", "4", "--timeout", "30", "--graceful-timeout", "3",
                "backfill.web:create_app()",
            ],
            cwd=ROOT, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                _get(port, {})
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: _get(port, WRONG), range(24)))
        statuses = [status for status, _ in answers]
        assert set(statuses) <= {401, 429} and statuses.count(401) >= MAX_FAILURES
        with engine.connect() as conn:
            state = conn.execute(
                text("SELECT failures, lockouts FROM auth_failures WHERE address = '127.0.0.1'")
            ).one()
        # every wrong secret that was compared was counted, once; one lockout however
        # many workers saw the limit crossed at the same moment
        assert state.failures == statuses.count(401)
        assert state.lockouts == 1

        status, retry_after = _get(port, AUTH)  # right secret, locked address
        assert status == 429 and retry_after is not None and 1 <= int(retry_after) <= 60
        assert _get(port, AUTH, source="127.0.0.2") == (200, None)
    finally:
        proc.terminate()
        proc.wait(15)
    output = log.read_text()
    assert "Traceback" not in output and SECRET not in output
    assert "127.0.0.1 locked out for" in output  # the lockout is logged, without the secret


# -- the secret's length


def test_a_short_secret_stops_create_app_with_one_line() -> None:
    short = "s3cr3t-15-chars"
    assert len(short) == 15
    with pytest.raises(ConfigError) as info:
        create_app({"BACKFILL_SETTINGS": load_settings(cron_secret=short)})
    message = str(info.value)
    assert "BACKFILL_CRON_SECRET" in message and "16 characters" in message
    assert "\n" not in message and short not in message
    assert create_app({"BACKFILL_SETTINGS": load_settings(cron_secret=short + "x")})
    assert len(SECRET) >= 16  # what every other test runs with


@pytest.mark.slow
def test_gunicorn_refuses_a_short_secret_with_one_line(tmp_path: Path) -> None:
    short = "s3cr3t-15-chars"
    proc = subprocess.run(
        [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{free_port()}",
            # One worker: with two failing to load at the same instant, gunicorn's
            # arbiter can print its own traceback (a second exit while it halts).
            "--workers", "1", "--threads", "4", "backfill.web:create_app()",
        ],
        cwd=ROOT, env=subprocess_env(BACKFILL_CRON_SECRET=short), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output and short not in output
    assert "App failed to load" in output  # gunicorn stops; it does not respawn workers
    # The one line, said by each worker that tried to load the app (at most --workers).
    lines = {line for line in output.splitlines() if "BACKFILL_CRON_SECRET" in line}
    assert len(lines) == 1, output
    assert lines.pop().startswith("invalid setting BACKFILL_CRON_SECRET: must be at least 16")


# -- the demo


class _FakeStack:
    """Stands in for honcho: the demo's secret handling is under test, not the stack."""

    pid = 0
    runs: list[dict[str, str]] = []

    def __init__(self, *args: Any, env: dict[str, str], **kwargs: Any) -> None:
        self.runs.append(env)

    def poll(self) -> int:
        return 0


def _run_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any) -> str:
    monkeypatch.setattr(demo, "ROOT", tmp_path)  # its stack.log, not the real one
    monkeypatch.setattr(demo.subprocess, "Popen", _FakeStack)
    monkeypatch.setattr(demo, "_wait_http", lambda *a, **k: False)  # stop right after start-up
    assert demo.main(["--from", "2023-01", "--to", "2023-01"]) == 1
    return str(capsys.readouterr().out)


def test_the_demo_makes_and_prints_a_random_secret_per_run(
    committed_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    monkeypatch.delenv("BACKFILL_CRON_SECRET")
    _FakeStack.runs = []
    outputs = [_run_demo(monkeypatch, tmp_path, capsys) for _ in range(2)]
    secrets = [env["BACKFILL_CRON_SECRET"] for env in _FakeStack.runs]
    assert secrets[0] != secrets[1] and all(len(s) == 32 for s in secrets)  # token_urlsafe(24)
    for out, secret in zip(outputs, secrets, strict=True):
        [line] = [line for line in out.splitlines() if line.startswith("Dashboard:")]
        assert "http://127.0.0.1:" in line and line.endswith(secret)


def test_the_demo_keeps_and_never_prints_the_operators_secret(
    committed_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    mine = "operator-chosen-secret-value"
    monkeypatch.setenv("BACKFILL_CRON_SECRET", mine)
    _FakeStack.runs = []
    out = _run_demo(monkeypatch, tmp_path, capsys)
    assert _FakeStack.runs[0]["BACKFILL_CRON_SECRET"] == mine
    assert mine not in out and "the BACKFILL_CRON_SECRET you set" in out

    monkeypatch.setenv("BACKFILL_CRON_SECRET", "tiny-secret")
    assert demo.main([]) == 2  # refused up front, in one line, as the web app would
    out = capsys.readouterr().out
    assert "BACKFILL_CRON_SECRET" in out and "tiny-secret" not in out
