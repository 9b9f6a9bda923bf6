"""The newcomer's first hour: the Procfile on a platform's ``$PORT``, beat's state
under the project, ``scripts/run-backfill --help`` that touches nothing, and a
progress display that fits an 80-column terminal."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from rich.console import Console

from backfill import demo
from backfill.stats import BookTotals, StatusCounts
from tests.conftest import ROOT, subprocess_env
from tests.support.webutil import free_port


def procfile_command(process: str, procfile: str = "Procfile") -> str:
    for line in (ROOT / procfile).read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process!r} in {procfile}")


def _env(**extra: str) -> dict[str, str]:
    env = subprocess_env(**extra)
    for name in ("WEB_PORT", "WEB_BIND", "PORT", "BEAT_SCHEDULE_FILE"):
        if name not in extra:
            env.pop(name, None)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def test_procfile_web_serves_healthz_on_port_with_web_port_unset(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as log:
        web = subprocess.Popen(
            ["bash", "-c", procfile_command("web")],
            cwd=ROOT,
            env=_env(PORT=str(port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        response = None
        while time.monotonic() < deadline:
            assert web.poll() is None, log_path.read_text()
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.3)
        assert response is not None, log_path.read_text()
        assert response.status_code in (200, 503), response.text
        assert isinstance(response.json(), dict)
        # gunicorn's own convention with PORT: every interface, as a platform needs
        assert f"Listening at: http://0.0.0.0:{port}" in log_path.read_text()
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        try:
            web.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
            web.wait(10)


def _bind_of(command: str, **env: str) -> str:
    """The ``--bind`` the web line would give gunicorn (a stub echoes its args)."""
    stub = command.replace("exec gunicorn", "echo", 1)
    out = subprocess.run(
        ["sh", "-c", stub], env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True
    )
    return out.stdout.split("--bind ", 1)[1].split()[0]


def test_web_bind_rules() -> None:
    web, dev = procfile_command("web"), procfile_command("web", "Procfile.dev")
    assert _bind_of(web) == "127.0.0.1:8000"  # today's default
    assert _bind_of(web, WEB_PORT="9001") == "127.0.0.1:9001"
    assert _bind_of(web, PORT="5000") == "0.0.0.0:5000"
    assert _bind_of(web, PORT="5000", WEB_BIND="127.0.0.1") == "127.0.0.1:5000"
    # the demo under honcho (which always sets PORT): its own port, on loopback
    assert _bind_of(web, PORT="5000", WEB_PORT="8123", WEB_BIND="127.0.0.1") == "127.0.0.1:8123"
    assert _bind_of(dev, PORT="5000") == "127.0.0.1:8000"  # local work stays on loopback
    assert _bind_of(dev, WEB_PORT="8123") == "127.0.0.1:8123"


def test_beat_schedule_lives_in_the_state_dir(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "celery").write_text('#!/bin/sh\necho "$@"\n')
    (bin_dir / "celery").chmod(0o755)
    state = tmp_path / "state"
    for procfile in ("Procfile", "Procfile.dev"):
        out = subprocess.run(
            ["sh", "-c", procfile_command("beat", procfile)],
            cwd=tmp_path,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "BACKFILL_STATE_DIR": str(state)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert state.is_dir()
        assert f"--schedule {state}/celerybeat-schedule" in out.stdout
    # default: ./var under the directory it runs in (honcho: the project), git-ignored
    out = subprocess.run(
        ["sh", "-c", procfile_command("beat")],
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "var").is_dir() and "--schedule ./var/celerybeat-schedule" in out.stdout
    assert "/var/" in (ROOT / ".gitignore").read_text().splitlines()


def test_run_backfill_help_is_fast_and_touches_nothing(tmp_path: Path) -> None:
    copy = tmp_path / "clone"
    (copy / "scripts").mkdir(parents=True)
    for name in ("run-backfill", "services", "bootstrap"):
        shutil.copy2(ROOT / "scripts" / name, copy / "scripts" / name)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    for flag in ("--help", "-h"):
        started = time.monotonic()
        out = subprocess.run(
            [str(copy / "scripts" / "run-backfill"), flag],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert out.returncode == 0, out.stderr
        assert time.monotonic() - started < 3
        assert out.stderr == ""
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before  # no .venv, no var/
    # the same options as the Python main job, each with its help text
    for action in demo.build_parser()._actions:
        for flag in action.option_strings:
            assert flag in out.stdout, flag
        assert action.help, action.option_strings
    assert "--stop" in out.stdout


def test_progress_fits_80_columns_in_two_lines() -> None:
    p = demo.Snapshot(
        StatusCounts(completed=120, failed=10, pending=100, retry=10, processing=48),
        BookTotals(books_generated=20000, isbns_resolved=12345),
    )
    assert (p.total, p.done, p.failed, p.waiting, p.processing) == (288, 120, 10, 110, 48)
    usage = {
        "gemini": "130/1500",
        "xai": "130/1000",
        "isbndb": "2400/5000",
        "openlibrary": "9000/100000",
        "googlebooks": "300/1000",
    }
    line = demo.detail_line(p, usage, 80)
    assert len(line) <= 80 and "isbndb 2400/5000" in line and "openlibrary" not in line
    assert "openlibrary 9000/100000" in demo.detail_line(p, usage, 200)
    assert demo.detail_line(p, usage, 30) == "resolved 12345/20000"
    # the first line: the bar, the count, the states and the time, within 80 columns
    console = Console(width=80, force_terminal=True, record=True)
    bar = demo._TwoLineProgress(
        *demo.progress_columns(80), console=console, auto_refresh=False, transient=False
    )
    with bar:
        task = bar.add_task("backfill", total=p.total, counts=demo.counts_text(p))
        bar.detail = line
        bar.update(task, completed=p.done + p.failed)
    lines = [ln for ln in console.export_text().splitlines() if ln.strip()]
    assert lines[-2].startswith("months") and "waiting 110" in lines[-2]
    assert lines[-1] == line
    assert all(len(ln) <= 80 for ln in lines)


def test_a_taken_port_is_announced(capsys: object) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = int(taken.getsockname()[1])
        console = demo.console
        demo.console = Console(record=True, width=200)
        try:
            chosen = demo._free_port(port, "web port")
            text = demo.console.export_text()
        finally:
            demo.console = console
    assert chosen != port
    assert text.strip() == f"web port {port} is taken: using {chosen} instead."
