"""``backfill-sandbox`` (or ``python -m backfill.sandbox``): ``--host 127.0.0.1 --port N
[--config JSON] [--isbndb-rate N] [--isbndb-daily-limit N] [--rate-clock-offset S]
[--rate-jitter-ms N]``."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

from backfill.sandbox import serve
from backfill.sandbox.config import SandboxConfigError


def _config(value: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@path/to/file.json``."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    return data


def _check_free(host: str, port: int) -> None:
    """Raise OSError when ``host:port`` is taken: werkzeug would report it in
    several lines and exit 1; here it is one line and exit 2, like any bad argument."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until interrupted; a bad argument prints one line and exits 2."""
    parser = argparse.ArgumentParser(
        prog="backfill-sandbox",
        description="Local emulator of the Gemini, xAI, ISBNdb, Open Library and Google Books "
        "APIs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8099, help="port (default 8099)")
    parser.add_argument(
        "--config",
        default=None,
        help='fault configuration as JSON, e.g. \'{"error_rate": {"gemini": 0.2}}\', or @file',
    )
    parser.add_argument(
        "--isbndb-rate", type=int, default=None, help="ISBNdb requests per second (default 1)"
    )
    parser.add_argument(
        "--isbndb-daily-limit",
        type=int,
        default=None,
        help="ISBNdb calls per day (default 5000)",
    )
    parser.add_argument(
        "--rate-clock-offset",
        type=float,
        default=None,
        help="seconds by which ISBNdb's and Open Library's rate windows are out of step "
        "with this machine's clock (default 0)",
    )
    parser.add_argument(
        "--rate-jitter-ms",
        type=int,
        default=None,
        help="random 0..N ms delay before a rate-limited request is admitted (default 0)",
    )
    args = parser.parse_args(argv)
    try:
        config = _config(args.config) if args.config else {}
        if args.isbndb_rate is not None:
            config["isbndb_rate_per_second"] = args.isbndb_rate
        if args.isbndb_daily_limit is not None:
            config["isbndb_daily_limit"] = args.isbndb_daily_limit
        if args.rate_clock_offset is not None:
            config["rate_clock_offset_seconds"] = args.rate_clock_offset
        if args.rate_jitter_ms is not None:
            config["rate_jitter_ms"] = args.rate_jitter_ms
        _check_free(args.host, args.port)
        serve(args.host, args.port, config)
    except (ValueError, OSError, SandboxConfigError) as exc:
        print(f"backfill-sandbox: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
