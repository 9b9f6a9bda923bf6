"""Celery worker subprocesses for the benchmarks, with the same flags for every app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench._common import ROOT, subprocess_env


class Worker:
    """``celery -A <app> worker`` on one queue, prefork, ``concurrency`` processes."""

    def __init__(self, app: str, queue: str, log_path: Path, concurrency: int = 2) -> None:
        self.app, self.queue, self.log_path, self.concurrency = app, queue, log_path, concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", self.app, "worker",
                    "-Q", self.queue, "-c", str(self.concurrency), "--pool", "prefork",
                    "-n", f"bench-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO",
                    "--without-mingle", "--without-gossip",
                ],
                cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() takes the pool too
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while "ready." not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"worker not ready: {self.log()[-3000:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
