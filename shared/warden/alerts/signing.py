"""Signed webhook deliveries that resist replay.

Every delivery attempt of the generic webhook receiver carries::

    X-Warden-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
    X-Warden-Timestamp: <the same t>

The HMAC covers the timestamp and the raw body together, so a captured request cannot be
re-sent later with a fresh timestamp: changing ``t`` breaks the signature, and a receiver
refuses a ``t`` more than ``tolerance`` seconds (default 300) from its own clock, in either
direction. ``X-Warden-Timestamp`` is for convenience (logging); it is not what is verified.

The scheme is Stripe's (``Stripe-Signature: t=…,v1=…`` over ``"{t}.{body}"``,
https://docs.stripe.com/webhooks/signatures — "Verify manually", "Prevent replay attacks"),
in the spirit of Slack's (``X-Slack-Signature: v0=…`` over ``"v0:{ts}:{body}"`` plus
``X-Slack-Request-Timestamp``, refused when more than five minutes from local time,
https://api.slack.com/authentication/verifying-requests-from-slack). As there, the timestamp
is taken once per attempt: a retried attempt is signed again with a fresh one.

:func:`verify` parses the header leniently (fields in any order, whitespace around them,
unknown fields ignored, several ``v1`` entries — any one matching suffices, so a sender can
sign with an old and a new key while a key is rotated) and compares in constant time. A
signature alone does not make a delivery once-only: within the window a receiver that needs
that must remember the signatures it has seen, or use the notification's group id and ``seq``
(the same notification repeated keeps its ``seq``). docs/alerting.md shows a standalone
verifier for receivers (standard library only); tests/test_receivers.py runs that very text.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = [
    "SCHEME",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_S",
    "sign",
    "signature",
    "verify",
]

SIGNATURE_HEADER = "X-Warden-Signature"
TIMESTAMP_HEADER = "X-Warden-Timestamp"
#: The version tag of the one signature scheme: HMAC-SHA256 over ``"<t>.<body>"``, in hex.
SCHEME = "v1"
#: How far (seconds, either direction) a signed timestamp may be from the receiver's clock.
TOLERANCE_S = 300
#: Longer than any real unix time in seconds; refuses absurd values before ``int()`` sees them.
_MAX_T_DIGITS = 12


def _mac(secret: str, stamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256, keyed by ``secret``, of ``b"<timestamp>." + body``."""
    return _mac(secret, str(int(timestamp)), body)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Warden-Signature`` header value: ``t=<timestamp>,v1=<signature>``."""
    return f"t={int(timestamp)},{SCHEME}={signature(secret, body, timestamp)}"


def _parse(header: str) -> tuple[str, list[str]] | None:
    """``(t as sent, [v1, ...])`` from a signature header, or ``None`` when it is unusable: no
    ``t``, several different ``t``, a ``t`` that is not plain digits, or no ``v1``. Fields may
    come in any order, with whitespace around them; unknown ones are ignored."""
    stamps: set[str] = set()
    candidates: list[str] = []
    for field in header.split(","):
        key, sep, value = field.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "t":
            stamps.add(value)
        elif key == SCHEME and value:
            candidates.append(value.lower())
    if len(stamps) != 1 or not candidates:
        return None
    (stamp,) = stamps
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_T_DIGITS):
        return None
    return stamp, candidates


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_S,
) -> bool:
    """Whether ``header`` (an ``X-Warden-Signature`` value) signs ``body`` with ``secret`` at a
    timestamp within ``tolerance`` seconds of ``now`` (default: this machine's clock), either
    side. ``False`` — never an exception — for a missing or malformed header, a timestamp out
    of the window, or no matching ``v1``; ``body`` must be the raw bytes as received."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, not {tolerance}")
    if not isinstance(header, str):
        return False
    parsed = _parse(header)
    if parsed is None:
        return False
    stamp, candidates = parsed
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        return False
    expected = _mac(secret, stamp, body).encode()  # over ``t`` as sent, as the sender signed it
    # Every candidate is compared (no early exit), each in constant time.
    matches = [hmac.compare_digest(expected, c.encode()) for c in candidates]
    return any(matches)
