"""Run a benchmark against an older commit's code, in the same run as the current code.

``run_at(rev, module, argv)`` checks ``rev`` out with ``git worktree add`` (at
``/tmp/backfill-before``), copies this ``bench/`` into it -- the benchmark and its
helpers, which import nothing from ``tests/`` -- and runs ``python -m <module>
<argv> --json FILE`` there, so the worker, the sandbox and the migrations are
that tree's. The benchmark writes its figures to FILE; the worktree is removed
afterwards whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._common import ROOT

TREE = Path("/tmp/backfill-before")


def run_at(rev: str, module: str, argv: list[str]) -> dict[str, Any]:
    """``python -m module *argv --json FILE`` in a worktree of ``rev``; FILE's contents."""
    if TREE.exists():
        raise RuntimeError(f"{TREE} exists; remove it: git worktree remove --force {TREE}")
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", str(TREE), rev], check=True, stdout=sys.stderr)
    try:
        for source in (ROOT / "bench").glob("*.py"):
            shutil.copy2(source, TREE / "bench" / source.name)
        out = TREE / "bench-before.json"
        env = {k: v for k, v in os.environ.items() if k not in ("BENCH_RESULTS", "PYTHONPATH")}
        subprocess.run(
            [sys.executable, "-m", module, *argv, "--json", str(out)],
            cwd=TREE,
            env={**env, "PYTHONPATH": str(TREE)},
            stdout=sys.stderr,  # its progress and figures are the caller's progress
            check=True,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    finally:
        subprocess.run([*git, "remove", "--force", str(TREE)], check=False, stdout=sys.stderr)


def revision() -> str:
    """The short commit of the tree this process runs from, "+dirty" when the code
    under test (``backfill/``, ``alembic/``) has changes not committed."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(ROOT), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--", "backfill", "alembic")
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
