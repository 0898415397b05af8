"""Fault injection for storage: crash the storage service, and the instance, at a chosen request.

:class:`CrashingSession` is the HTTP session of a real ``storage.Client``. When a request matches
its trigger it SIGKILLs the storage emulator (a real process) and raises
:class:`InstanceCrashed`, a ``BaseException``: like a function instance dying at that instant,
no retry, ``except Exception`` or cleanup request gets out of it (every later request raises
too). Everything before the trigger really reached the emulator; nothing after it did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests


class InstanceCrashed(BaseException):
    """The instance died (with the storage service) at the trigger."""


Trigger = Callable[[str, str, bytes], bool]


def body_mentions(fragment: str, *, method: str | None = None) -> Trigger:
    """Trigger on the first request whose URL or body names ``fragment`` (an object path)."""
    needle = fragment.encode()

    def match(verb: str, url: str, body: bytes) -> bool:
        if method is not None and verb.upper() != method:
            return False
        return needle in body or fragment.replace("/", "%2F") in url or fragment in url

    return match


class CrashingSession(requests.Session):
    def __init__(self, trigger: Trigger, on_crash: Callable[[], None]) -> None:
        super().__init__()
        self._trigger = trigger
        self._on_crash = on_crash
        self.crashed = False
        self.requests_before_crash = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if self.crashed:
            raise InstanceCrashed("the instance is gone")
        body = kwargs.get("data") or b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):  # a stream (resumable upload): match on the URL only
            body = b""
        if self._trigger(method, url, body):
            self.crashed = True
            self._on_crash()
            raise InstanceCrashed(f"crashed at {method} {url}")
        self.requests_before_crash += 1
        return super().request(method, url, *args, **kwargs)
