"""Hosts on one machine: Linux network namespaces on one bridge device, and the faults a network has.

Each host is a namespace with one interface (``eth0``, an address in ``NET``.0/24) whose other end is on the
bridge ``LINK``; the runner itself sits on the bridge at ``NET``.1. Nothing routes out of the subnet. A
partition is iptables DROP rules inside a host (both directions, so the peers see silence, not resets); loss
is iptables' random statistic match on the packets to and from chosen peers. (tc netem would add latency too,
but this machine's kernel has no netem qdisc — ``tc qdisc add … netem`` answers "Specified qdisc kind is
unknown" — so latency is the sandbox's own, see ``tests/load/cluster.py``.) Everything is removed on teardown, and
leftovers of an earlier run are removed before a new one starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bridge.dev.stack import DevstackError, Proc, ensure_binaries

NET = "10.250.0"
LINK = "bcl0"
PREFIX = "bcl-"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and out.returncode:
        raise DevstackError(f"{' '.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
    return out


def require_root() -> None:
    if os.geteuid() != 0:
        raise DevstackError("make cluster builds network namespaces and iptables rules: it needs root "
                            "(run it as root, e.g. sudo make cluster)")
    ensure_binaries("ip", "iptables", "haproxy", "redis-server", "postgres", "initdb")


@dataclass
class Host:
    name: str
    ip: str
    logs: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def ns(self) -> str:
        return PREFIX + self.name

    def create(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.ns, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        sh("ip", "link", "set", self.ns, "master", LINK, "up")
        self.exec("ip", "addr", "add", f"{self.ip}/24", "dev", "eth0")
        self.exec("ip", "link", "set", "eth0", "up")
        self.exec("ip", "link", "set", "lo", "up")

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def start(self, name: str, argv: list[str], *, env: dict | None = None, user: str | None = None) -> Proc:
        prefix = ["ip", "netns", "exec", self.ns] + (["runuser", "-u", user, "--"] if user else [])
        proc = Proc(f"{self.name}-{name}", prefix + argv, log_dir=self.logs, env=env)
        self.procs[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM, as a process manager stops a service: it drains, then exits."""
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop(timeout)

    def kill(self) -> None:
        """The whole host dies at once: every process in it, SIGKILL."""
        for pid in sh("ip", "netns", "pids", self.ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        for proc in self.procs.values():
            proc.stop(5)
        self.procs.clear()

    def cut_off(self, *peers: Host) -> None:
        for peer in peers:
            self.exec("iptables", "-A", "OUTPUT", "-d", peer.ip, "-j", "DROP")
            self.exec("iptables", "-A", "INPUT", "-s", peer.ip, "-j", "DROP")

    def heal(self) -> None:
        self.exec("iptables", "-F")

    def lose(self, *peers: Host, percent: float) -> None:
        """Drop that share of the packets this host exchanges with ``peers``, each way, at random."""
        share = f"{percent / 100:.4f}"
        for peer in peers:
            for chain, side in (("OUTPUT", "-d"), ("INPUT", "-s")):
                self.exec("iptables", "-A", chain, side, peer.ip, "-m", "statistic", "--mode", "random",
                          "--probability", share, "-j", "DROP")


class Network:
    """The bridge device and its hosts, by name."""

    def __init__(self, addresses: dict[str, int], logs: Path):
        self.hosts = {name: Host(name, f"{NET}.{n}", logs) for name, n in addresses.items()}

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def build(self) -> None:
        self.teardown()
        sh("ip", "link", "add", LINK, "type", "bridge")
        sh("ip", "addr", "add", f"{NET}.1/24", "dev", LINK)
        sh("ip", "link", "set", LINK, "up")
        for host in self.hosts.values():
            host.create()

    def teardown(self) -> None:
        for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
            ns = line.split()[0] if line.strip() else ""
            if ns.startswith(PREFIX):
                for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                sh("ip", "netns", "del", ns, check=False)
        for host in self.hosts.values():
            for proc in host.procs.values():
                proc.stop(5)
            host.procs.clear()
        # A namespace whose last process is still exiting outlives its deletion, and so does its veth.
        for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if line.count(":") > 1 else ""
            if name.startswith(PREFIX):
                sh("ip", "link", "del", name, check=False)
        sh("ip", "link", "del", LINK, check=False)
