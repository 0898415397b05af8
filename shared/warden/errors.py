"""One exception tree for Warden.

::

    WardenError
    ├── PermanentError            the same input will fail the same way: log at ERROR, acknowledge
    │   ├── ConfigError           warden.yaml (or an estimator spec) is invalid
    │   ├── EventError            a malformed or unusable event / message
    │   ├── DataError             training data missing, empty, or with the wrong columns
    │   ├── UnknownModelError     a model name that warden.yaml does not declare
    │   ├── VersionNotFound       a registry version (or alias) that does not exist
    │   ├── IntegrityError        an artifact whose sha256 does not match its manifest (or an
    │   │                         object that is not the JSON it should be)
    │   ├── SnapshotNotFound      no complete backup snapshot with that id (or not of that model)
    │   └── MetricsRejectedError  metric points invalid, or refused by Cloud Monitoring for good
    └── RetryableError            a transient failure: raise so Pub/Sub redelivers
        ├── ConflictError         a compare-and-swap lost too many times in a row
        ├── RunInProgress         another instance holds the lease for this request
        └── MetricsWriteError     Cloud Monitoring failed transiently (unavailable, quota, ...)

Entry points map ``PermanentError`` to "acknowledge" and everything else to "retry".
Every exception class of the package is defined here, and nowhere else.
"""

from __future__ import annotations


class WardenError(Exception):
    """Base of every error Warden raises on purpose."""


class PermanentError(WardenError):
    """Retrying cannot help; acknowledge the message and report."""


class ConfigError(PermanentError):
    """The configuration is invalid. The message names the file, the key and the problem."""


class EventError(PermanentError):
    """The incoming event or message is malformed or unusable."""


class DataError(PermanentError):
    """Training or evaluation data is missing, empty or malformed."""


class UnknownModelError(PermanentError):
    """The model is not declared in the configuration."""


class VersionNotFound(PermanentError):
    """The requested version or alias does not exist in the registry."""


class IntegrityError(PermanentError):
    """An artifact's checksum does not match its manifest: it is never loaded."""


class SnapshotNotFound(PermanentError):
    """No complete snapshot with that id (or it does not hold the model asked for)."""


class MetricsRejectedError(PermanentError):
    """The points are invalid, or the API refused them for a reason a retry cannot fix."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RetryableError(WardenError):
    """A transient failure; the caller should retry (Pub/Sub redelivers)."""


class ConflictError(RetryableError):
    """A compare-and-swap lost too many races in a row."""


class RunInProgress(RetryableError):
    """Another instance is working on the same request right now."""


class MetricsWriteError(RetryableError):
    """Cloud Monitoring failed transiently (unavailable, timeout, quota, internal)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
