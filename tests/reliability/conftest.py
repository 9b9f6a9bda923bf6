"""The ``stack`` fixture: workers and beat as subprocesses, the sandbox as the APIs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WorkerProcess
from tests.reliability.harness import FAST, BeatProcess
from tests.sandbox_fixture import Sandbox


class Stack:
    """Starts the processes of one test with the same environment."""

    def __init__(
        self, url: str, sandbox: Sandbox, start_worker: Callable[..., Any], tmp_path: Path
    ) -> None:
        self.url = url
        self.sandbox = sandbox
        self._start_worker = start_worker
        self.tmp_path = tmp_path
        self.beats: list[BeatProcess] = []
        self.restarts = 0

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.sandbox.env(), **FAST, **extra}

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
