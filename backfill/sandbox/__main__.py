"""``python -m backfill.sandbox --host 127.0.0.1 --port N [--config JSON]
[--isbndb-rate N] [--isbndb-daily-limit N]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from backfill.sandbox import serve
from backfill.sandbox.config import ConfigError


def _config(value: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@path/to/file.json``."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    return data


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until interrupted; a bad argument prints one line and exits 2."""
    parser = argparse.ArgumentParser(
        prog="python -m backfill.sandbox",
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
    args = parser.parse_args(argv)
    try:
        config = _config(args.config) if args.config else {}
        if args.isbndb_rate is not None:
            config["isbndb_rate_per_second"] = args.isbndb_rate
        if args.isbndb_daily_limit is not None:
            config["isbndb_daily_limit"] = args.isbndb_daily_limit
        serve(args.host, args.port, config)
    except (ValueError, OSError, ConfigError) as exc:
        print(f"backfill sandbox: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
