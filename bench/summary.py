"""One table of every benchmark's figures, and the machine they ran on.

python -m bench.summary results.jsonl        (bench/run_all.sh calls it)
python -m bench.summary --machine            (the machine only)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

from bench._common import ADMIN_URL, BROKER_URL, HEADER, Figure, figure_rows, table


def machine() -> dict[str, str]:
    """CPUs, memory, and the versions of Python, PostgreSQL and RabbitMQ in use."""
    info = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory (free -h)": _memory(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(ADMIN_URL)
        with engine.connect() as conn:
            info["postgresql"] = str(conn.execute(text("SHOW server_version")).scalar_one())
        engine.dispose()
    except Exception as exc:  # a summary without the version beats no summary
        info["postgresql"] = f"unknown ({type(exc).__name__})"
    try:
        from kombu import Connection

        with Connection(BROKER_URL, connect_timeout=5) as conn:
            conn.connect()
            props = conn.connection.server_properties
            version = props.get("version", "?")
            info["rabbitmq"] = version.decode() if isinstance(version, bytes) else str(version)
    except Exception as exc:
        info["rabbitmq"] = f"unknown ({type(exc).__name__})"
    for name in ("celery", "kombu", "sqlalchemy", "psycopg", "gunicorn", "flask"):
        try:
            from importlib.metadata import version as dist_version

            info[name] = dist_version(name)
        except Exception:
            info[name] = "?"
    return info


def _memory() -> str:
    try:
        out = subprocess.run(["free", "-h"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    for line in out.splitlines():
        if line.startswith("Mem:"):
            parts = line.split()
            return f"{parts[1]} total, {parts[-1]} available"
    return "?"


def load(path: str) -> list[tuple[str, Figure]]:
    rows: list[tuple[str, Figure]] = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                data = json.loads(line)
                bench = data.pop("bench")
                rows.append((bench, Figure(**data)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", help="JSON lines written by the benchmarks")
    parser.add_argument("--machine", action="store_true", help="print the machine only")
    args = parser.parse_args(argv)

    print("Machine: " + "; ".join(f"{k} {v}" for k, v in machine().items()))
    if args.machine or not args.results:
        return 0
    rows: list[list[str]] = []
    for bench, figure in load(args.results):
        rows += figure_rows(bench, [figure])
    print()
    print(table(rows, HEADER))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
