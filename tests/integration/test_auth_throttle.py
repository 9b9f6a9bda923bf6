"""Nobody guesses their way in: wrong cron secrets are throttled per client address
(internal API and /login, state shared by every web process), short secrets stop
the web app, and the demo makes a random secret per run.

Time is the database's: lockouts and windows pass by moving the stored
timestamps back, as ``tests/system/reliability/harness.py`` does for the quota day.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session

from backfill import demo
from backfill.config import ConfigError, load_settings
from backfill.web import create_app
from backfill.web.throttle import MAX_FAILURES
from tests.support.webutil import AUTH, SECRET

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


# -- the secret's length (gunicorn's refusal, and the throttle shared by every gunicorn
# worker over real HTTP: tests/system/test_auth_gunicorn.py)


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
