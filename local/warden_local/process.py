"""A child process on a loopback port that we start, wait for, and always stop.

Every child runs in its own session (process group) so that stopping it also stops whatever it
spawned (the Pub/Sub emulator's launcher starts a java child, for instance).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Self

#: Its own generator: a test that seeds ``random`` must not make every worker pick alike.
_PICKS = random.SystemRandom()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback port free now, for a server that binds it a little later.

    Picked below the kernel's ephemeral range: a port from that range (what binding port 0
    gives) can be taken meanwhile by any outgoing connection's local end, and a suite that makes
    thousands of storage requests did take one (the scheduler stand-in then found its port held).
    Only another picker can collide here, and :meth:`ManagedProcess.start` re-picks then.
    """
    low, _high = _ephemeral_range()
    floor = 10000 if low > 12000 else 1024
    for _ in range(200):
        port = _PICKS.randrange(floor, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def listener_group(port: int) -> int | None:
    """The process group of the process listening on loopback ``port``, from Linux's /proc;
    None when that cannot be told (no /proc, no listener, or its process is not readable)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl, local address:port (hex), remote, state (0A: LISTEN)
            listening = len(fields) > 9 and fields[3] == "0A"
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return os.getpgid(int(proc.name))
        except (OSError, ProcessLookupError):
            continue
    return None


class ManagedProcess:
    """Subclasses give :meth:`command` and :meth:`ready`; this class does the lifecycle."""

    name = "process"

    def __init__(
        self,
        port: int | None = None,
        *,
        log: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._picked_port = port is None
        self.port = port or free_port()
        self._log = log
        self._env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self.cwd: Path | None = None

    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(self.port)

    def preflight(self) -> None:
        """Raise a helpful error before starting if something required is missing."""

    def start(self, timeout: float = 30.0) -> Self:
        self.preflight()
        for _ in range(3):
            if self._launch(timeout):
                return self
            # Another process answers on the port we picked (it took it between our pick and
            # our child's bind): a request would reach it, not us. Pick again, if we picked.
            if not self._picked_port:
                raise RuntimeError(f"{self.name}: port {self.port} is held by another process")
            self.port = free_port()
        raise RuntimeError(f"{self.name}: every port picked was taken by another process")

    def _launch(self, timeout: float) -> bool:
        """Start the child and wait for it: True once it answers on the port, False if another
        process does (our child is stopped then)."""
        self._proc = subprocess.Popen(
            list(self.command()),
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            env=self._env,
            cwd=self.cwd,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"{self.name} exited with code {code} while starting")
            if self.ready():
                if listener_group(self.port) in (None, self._proc.pid):
                    return True
                self.stop()
                return False
            time.sleep(0.03)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready on port {self.port} within {timeout}s")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, for fault-injection tests."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=5)
        # Children that outlived their parent but kept its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FunctionServer(ManagedProcess):
    """``python -m functions_framework`` serving one function of ``source`` on a loopback port,
    as Cloud Functions would (the local stack, the benchmarks and end-to-end tests use it)."""

    def __init__(
        self,
        source: Path,
        target: str,
        *,
        signature: str = "cloudevent",
        port: int | None = None,
        log: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        super().__init__(port, log=log, env=env)
        self.source = Path(source)
        self.target = target
        self.signature = signature
        self.cwd = cwd
        self.name = f"function {target}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "functions_framework", "--target", self.target,
            "--source", str(self.source), "--signature-type", self.signature,
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"
