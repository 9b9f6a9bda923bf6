"""Throw-away "hosts" for tests: Linux network namespaces on a private bridge.

:class:`Network` creates, for one test run, a bridge ``br-bf<tag>`` in the host
namespace with ``10.231.<n>.1/24`` (a /24 no interface or route of the machine
uses) and, per host, a namespace ``backfill-<tag>-<name>`` joined to the bridge by
a veth pair, its end renamed ``eth0`` and addressed ``10.231.<n>.<11+i>``, with
``lo`` up. A process started with :meth:`Network.command` runs inside a host's
namespace and reaches the machine only through the bridge address
(:attr:`Network.gateway`), where the test's services listen.

:meth:`Network.destroy` kills whatever still runs in the namespaces and removes
namespaces, veths and bridge; it never raises, so teardown always completes.
Everything it touches is named with this run's tag: nothing else on the machine
is changed.

:func:`unavailable` says why namespaces cannot be used here (not root, no
``ip``, ``ip netns add`` refused), or None.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

SUBNET_PREFIX = "10.231"


def _ip(*args: str, check: bool = True, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    """``ip ARGS`` (inside namespace ``ns`` if given); raises with its stderr on failure."""
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def unavailable() -> str | None:
    """Why network namespaces cannot be created here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    probe = f"backfill-probe-{secrets.token_hex(3)}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every IPv4 network on an interface or in a route of the host namespace."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            nets.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("broadcast", "local", "unicast"):
            first = line.split()[1]
        with contextlib.suppress(ValueError):
            if first != "default":
                nets.append(ipaddress.ip_network(first, strict=False))
    return nets


def free_subnet() -> int:
    """A third octet ``n`` such that ``10.231.n.0/24`` overlaps nothing in use."""
    used = _used_networks()
    for n in secrets.SystemRandom().sample(range(1, 255), 254):
        net = ipaddress.ip_network(f"{SUBNET_PREFIX}.{n}.0/24")
        if not any(net.overlaps(u) for u in used):
            return n
    raise RuntimeError(f"no free /24 in {SUBNET_PREFIX}.0.0/16")


@dataclass(frozen=True)
class Host:
    """One namespace: its short name (``w1``), namespace name, address, host-side veth."""

    name: str
    ns: str
    address: str
    veth: str


class Network:
    """A bridge and one namespace per host, named after this run's ``tag``."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.bridge = f"br-bf{self.tag}"[:15]
        self.subnet = free_subnet()
        self.gateway = f"{SUBNET_PREFIX}.{self.subnet}.1"
        self.hosts: dict[str, Host] = {}
        self._bridge_made = False

    def create(self, names: Sequence[str]) -> Network:
        """The bridge, then one namespace per name (``.11``, ``.12``, ...)."""
        _ip("link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, name in enumerate(names):
            host = Host(
                name=name,
                ns=f"backfill-{self.tag}-{name}",
                address=f"{SUBNET_PREFIX}.{self.subnet}.{11 + i}",
                veth=f"vbf{self.tag}{i}"[:15],
            )
            _ip("netns", "add", host.ns)
            self.hosts[name] = host  # registered first: destroy() removes it on any failure
            peer = f"{host.veth}p"[:15]
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", host.veth, "master", self.bridge)
            _ip("link", "set", host.veth, "up")
            _ip("link", "set", peer, "netns", host.ns)
            _ip("link", "set", peer, "name", "eth0", ns=host.ns)
            _ip("addr", "add", f"{host.address}/24", "dev", "eth0", ns=host.ns)
            _ip("link", "set", "eth0", "up", ns=host.ns)
            _ip("link", "set", "lo", "up", ns=host.ns)
        return self

    def command(self, name: str, cmd: Sequence[str]) -> list[str]:
        """``cmd`` run inside host ``name``'s namespace."""
        return ["ip", "netns", "exec", self.hosts[name].ns, *cmd]

    def pids(self, name: str) -> list[int]:
        """Every process living in host ``name``'s namespace."""
        done = _ip("netns", "pids", self.hosts[name].ns, check=False)
        return [int(p) for p in done.stdout.split() if p.isdigit()]

    def kill(self, name: str, timeout: float = 10) -> list[int]:
        """SIGKILL every process of host ``name`` (the host "dies"); returns their pids
        once none is left."""
        killed: list[int] = []
        deadline = time.monotonic() + timeout
        while pids := self.pids(name):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {name} still alive: {pids}")
            time.sleep(0.05)
        return killed

    def destroy(self) -> None:
        """Kill what runs in the namespaces, remove them, their veths and the bridge."""
        for name, host in self.hosts.items():
            with contextlib.suppress(Exception):
                self.kill(name)
            _ip("link", "del", host.veth, check=False)  # takes its peer along
            _ip("netns", "del", host.ns, check=False)
        if self._bridge_made:
            _ip("link", "del", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        """Namespaces or links of this run still present (empty after destroy())."""
        names = _ip("netns", "list", check=False).stdout + _ip("-o", "link", check=False).stdout
        ours = [self.bridge, *(h.ns for h in self.hosts.values()),
                *(h.veth for h in self.hosts.values())]  # fmt: skip
        return [n for n in ours if n in names]
