"""A private PostgreSQL server and a private RabbitMQ node, for tests that stop them.

Tests of outages (``tests/system/reliability/test_restarts.py``) must be able to stop
and start the database and the broker in the middle of a run. Doing that to the
machine's own services would cut every other user of them (a developer's
databases, another test run), so those tests get instances of their own:

* :class:`PrivatePostgres`: ``initdb`` into a temporary directory (as the
  ``postgres`` user when run as root: initdb refuses root), served by
  ``pg_ctl`` on a free port of 127.0.0.1 (or of the ``host`` given: both classes
  take one, e.g. a test bridge's address) with its Unix socket in that directory,
  ``fsync`` off. Stopped with ``pg_ctl stop -m fast`` (every connection cut),
  started again with ``pg_ctl start``.
* :class:`PrivateRabbitMQ`: ``rabbitmq-server`` as a child process with a node
  name of its own (``backfill-test-<id>@localhost``), its own AMQP and
  distribution ports, every directory (Mnesia, logs, config, plugins, Erlang
  cookie via ``HOME``) in a temporary directory, and no plugins. Restarted
  with ``rabbitmqctl -n <node> stop_app`` / ``start_app``. Only epmd (the
  Erlang port mapper on port 4369) is shared with the machine's own node: it is
  a name registry that every Erlang node on the host uses.

Both are started by the caller (a session fixture, only when a test asks for
them) and removed with :meth:`destroy`. :class:`ServiceUnavailable` says why
one cannot be started on this machine.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.sandbox_fixture import free_port


class ServiceUnavailable(RuntimeError):
    """A private service cannot be started here (binaries or user missing)."""


def _run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _free_port_on(host: str) -> int:
    """A TCP port nobody listens on at ``host`` right now (the service's listen address)."""
    if host == "127.0.0.1":
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _free_port_between(low: int, high: int) -> int:
    """A free TCP port in ``[low, high)`` (for Erlang distribution: see PrivateRabbitMQ)."""
    candidates = list(range(low, high))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ServiceUnavailable(f"no free port between {low} and {high}")


# -- PostgreSQL ----------------------------------------------------------------


def _pg_bindir() -> Path:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/N/bin)."""
    versions = [Path(p).parent.parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    versions = [v for v in versions if v.name.isdigit()]
    if versions:
        return max(versions, key=lambda v: int(v.name)) / "bin"
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServiceUnavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


def _utf8_locale() -> str:
    """C.UTF-8 like the machine's server when the C library has it, else C."""
    try:
        names = _run(["locale", "-a"], timeout=10).stdout.split()
    except Exception:
        return "C"
    return "C.UTF-8" if any(n.lower() in ("c.utf8", "c.utf-8") for n in names) else "C"


class PrivatePostgres:
    """A throw-away PostgreSQL server on <host>:<free port>, superuser ``postgres``.

    ``host``: the one address it listens on (and its URLs name), e.g. a test
    bridge's; clients of that address's subnets are trusted like loopback's."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.bindir = _pg_bindir()
        # initdb and postgres refuse to run as root: use the postgres account.
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServiceUnavailable("running as root and there is no 'postgres' user") from exc
            self.run_as = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="backfill-test-pg-"))
        if self.run_as:
            info = pwd.getpwnam(self.run_as)
            os.chown(self.dir, info.pw_uid, info.pw_gid)
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.port = _free_port_on(host)

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def init(self) -> PrivatePostgres:
        _run(
            self._cmd(
                "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", f"--locale={_utf8_locale()}", "--no-sync",
            ),
            cwd=self.dir,
            timeout=120,
        )  # fmt: skip
        if self.host != "127.0.0.1":  # initdb trusts loopback only
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet trust\n")
        return self

    def start(self, timeout: float = 60) -> None:
        """``pg_ctl start``, waiting until the server accepts connections."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={self.host}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run(
            self._cmd(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log_path),
                "-w", "-t", str(int(timeout)), "-o", options, "start",
            ),
            cwd=self.dir,
            timeout=timeout + 10,
        )  # fmt: skip

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """``pg_ctl stop -m fast``: every open connection is cut."""
        _run(
            self._cmd("pg_ctl", "-D", str(self.data), "-w", "-t", str(int(timeout)), "-m", mode,
                      "stop"),
            cwd=self.dir,
            timeout=timeout + 10,
        )  # fmt: skip

    def running(self) -> bool:
        done = _run(self._cmd("pg_ctl", "-D", str(self.data), "status"), cwd=self.dir, check=False)
        return done.returncode == 0

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The server down for the body of the ``with``, started again after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            with contextlib.suppress(Exception):
                self.stop(mode="immediate", timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- RabbitMQ ------------------------------------------------------------------


def _rabbit_sbin() -> Path:
    """The directory of the real ``rabbitmq-server`` / ``rabbitmqctl`` scripts.

    Debian's /usr/sbin ones are wrappers that switch to the ``rabbitmq`` user
    and its home (the machine node's Erlang cookie); the scripts they call are
    in /usr/lib/rabbitmq/bin and run as whoever starts them.
    """
    debian = Path("/usr/lib/rabbitmq/bin")
    if (debian / "rabbitmq-server").exists():
        return debian
    server = shutil.which("rabbitmq-server")
    if server:
        return Path(server).parent
    raise ServiceUnavailable("RabbitMQ (rabbitmq-server, rabbitmqctl) is not installed")


class PrivateRabbitMQ:
    """A throw-away RabbitMQ node on <host>:<free port>; user guest/guest.

    ``host``: the one address its AMQP listener binds (and its URL names), by
    default 127.0.0.1; on any other, guest may log in from other addresses."""

    def __init__(self, tag: str | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.sbin = _rabbit_sbin()
        self.tag = tag or secrets.token_hex(4)
        self.node = f"backfill-test-{self.tag}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="backfill-test-rabbitmq-"))
        self.port = _free_port_on(host)
        # The distribution port, and the CLI's (by default this port + 10000..10010)
        # kept apart from the machine node's (25672, CLI 35672..35682).
        self.dist_port = _free_port_between(25700, 26700)
        self.proc: subprocess.Popen[bytes] | None = None
        home = self.dir / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"  # a fresh cookie, not the machine node's
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        config = [f"listeners.tcp.1 = {host}:{self.port}", "log.console = false"]
        if host != "127.0.0.1":  # guest is refused off loopback by default
            config.append("loopback_users = none")
        (self.dir / "rabbitmq.conf").write_text("\n".join([*config, "log.file.level = info", ""]))
        (self.dir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq/rabbitmq-env.conf
        (self.dir / "enabled_plugins").write_text("[].\n")  # no management, no prometheus
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.dir / "plugins-expand"),
            # The Erlang distribution (the node's control channel: rabbitmqctl)
            # and epmd stay on loopback whatever ``host`` is: only AMQP, the
            # service, listens on ``host``.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            # epmd is shared with the machine's node; if none runs yet, the one
            # this node starts listens on loopback only, like the machine's.
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.log_path = self.dir / "server.out"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}//"

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """``rabbitmqctl -n <this node> ...``; its output."""
        done = _run(
            [str(self.sbin / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            cwd=self.dir,
            timeout=timeout,
            check=check,
        )
        return done.stdout

    def start(self, timeout: float = 120) -> PrivateRabbitMQ:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(self.sbin / "rabbitmq-server")],
                env=self.env,
                cwd=self.dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # not in pytest's process group: ^C stays ours
            )
        self._await(timeout)
        return self

    def _await(self, timeout: float) -> None:
        """Until the node answers ``await_startup`` and its AMQP port accepts."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited {self.proc.returncode}: {self.log()}")
            done = _run(
                [str(self.sbin / "rabbitmqctl"), "-n", self.node, "-q", "await_startup"],
                env=self.env,
                cwd=self.dir,
                timeout=max(5.0, deadline - time.monotonic()),
                check=False,
            )
            if done.returncode == 0 and _port_open(self.port, self.host):
                return
            last = done.stdout + done.stderr
            time.sleep(0.5)
        raise RuntimeError(f"RabbitMQ node {self.node} not up after {timeout:g}s: {last}")

    def stop_app(self) -> None:
        """Stop the RabbitMQ application (the Erlang node stays up): clients are cut."""
        self.ctl("stop_app")

    def start_app(self, timeout: float = 60) -> None:
        self.ctl("start_app", timeout=timeout)
        self._await(timeout)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The broker down for the body of the ``with``, started again after it."""
        self.stop_app()
        try:
            yield
        finally:
            self.start_app()

    def queue(self, name: str) -> dict[str, str] | None:
        """``durable``, ``messages``, ``messages_ready``, ``messages_unacknowledged``,
        ``messages_persistent`` and ``consumers`` of a queue; None if it does not exist."""
        fields = ("name", "durable", "messages", "messages_ready", "messages_unacknowledged",
                  "messages_persistent", "consumers")  # fmt: skip
        for line in self.ctl("-q", "list_queues", "--no-table-headers", *fields).splitlines():
            parts = line.split("\t")
            if len(parts) == len(fields) and parts[0] == name:
                return dict(zip(fields[1:], parts[1:], strict=True))
        return None

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        logs = sorted((self.dir / "log").glob("*.log")) if (self.dir / "log").exists() else []
        for path in logs:
            text += f"\n--- {path.name}\n" + path.read_text(errors="replace")[-4000:]
        return text[-6000:]

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.ctl("shutdown", timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
