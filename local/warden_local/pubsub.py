"""The Cloud SDK's Pub/Sub emulator (needs Java) on a loopback port, and the triggers Terraform
deploys, created in it.

We call the emulator's own launcher (``platform/pubsub-emulator/bin/cloud-pubsub-emulator``):
ready in ~2 s, against ~5 s for ``gcloud beta emulators pubsub start``. It spawns a java child,
so it runs in its own process group and is stopped as a group.

Triggers: per event function, the push subscription of terraform/modules/function (the
function's URL as push endpoint, retry and dead-letter policy from terraform/delivery.json), and
per topic the ``…-dead-letter`` topic with its hold subscription (terraform/pubsub.tf). What the
emulator honours of those policies is measured in docs/decisions.md ("Local cloud").
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warden_local.process import ManagedProcess

INSTALL_HINT = (
    "The Pub/Sub emulator needs the Google Cloud SDK and Java 17+:\n"
    "  apt-get install google-cloud-cli-pubsub-emulator openjdk-17-jre-headless\n"
    "  (or: gcloud components install pubsub-emulator beta)"
)


def launcher_path() -> Path:
    candidates = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk = Path(os.path.realpath(gcloud)).parent.parent
        candidates.append(sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator")
    candidates += [
        Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
        Path("/usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
    ]
    for path in candidates:
        if path.exists():
            return path
    raise RuntimeError(f"Pub/Sub emulator not found.\n{INSTALL_HINT}")


JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:CICompilerCount=1"


#: Seconds after which a class-archive writer's lock counts as left by a dead writer.
ARCHIVE_LOCK_TTL = 600


def class_archive(cache: Path | None = None) -> Path:
    """Where the emulator's class-data-sharing archive lives: one per launcher and java binary
    (an archive from another JDK or emulator would only be ignored, with a warning)."""
    java = os.path.realpath(shutil.which("java") or "java")
    launcher = launcher_path()
    stamp = f"{java}|{launcher}|{launcher.stat().st_mtime_ns}"
    key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    base = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "warden"
    return base / f"pubsub-emulator-{key}.jsa"


class PubSubEmulator(ManagedProcess):
    """The real Pub/Sub emulator; ``host`` is what to put in ``PUBSUB_EMULATOR_HOST``.

    Its JVM starts from a class-data-sharing archive of the emulator's classes (JDK 13+'s
    dynamic AppCDS): the first run without one writes it as the JVM exits, and every later start
    maps it instead of loading and verifying each class. Measured here: ready in 0.35 s instead
    of 0.8 s, half the CPU (the suite starts a dozen emulators). ``cache``: where the archive
    is kept (default ``$XDG_CACHE_HOME/warden`` or ``~/.cache/warden``)."""

    name = "pubsub-emulator"

    def __init__(self, *args: Any, cache: Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache = cache
        self._archive: Path | None = None
        self._archive_tmp: Path | None = None
        self._lock: Path | None = None
        #: ``used``: started from the archive; ``writing``: this run writes it at exit.
        self.class_sharing = ""

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def preflight(self) -> None:
        if shutil.which("java") is None:
            raise RuntimeError(f"Java is not installed.\n{INSTALL_HINT}")
        launcher_path()

    def command(self) -> list[str]:
        return [str(launcher_path()), "--host=127.0.0.1", f"--port={self.port}"]

    def start(self, timeout: float = 30.0) -> PubSubEmulator:
        # A short-lived emulator on a small machine: the client compiler only and the serial
        # collector (the launcher reads CLOUD_PUBSUB_EMULATOR_OPTS). Measured here: 25 % less
        # CPU to start and serve 300 messages (3.1 → 2.3 s), same readiness time.
        env = dict(os.environ if self._env is None else self._env)
        chosen = "CLOUD_PUBSUB_EMULATOR_OPTS" not in env
        if chosen:
            env["CLOUD_PUBSUB_EMULATOR_OPTS"] = JVM_OPTS + self._sharing_opts()
        self._env = env
        try:
            super().start(timeout=timeout)
        except RuntimeError:
            if not (chosen and self.class_sharing == "used" and self._archive is not None):
                raise
            # A damaged archive makes the JVM die at start (a truncated one: SIGBUS): drop it
            # and start without; the next clean run writes a new one.
            with contextlib.suppress(OSError):
                self._archive.unlink()
            env["CLOUD_PUBSUB_EMULATOR_OPTS"] = JVM_OPTS + self._sharing_opts()
            super().start(timeout=timeout)
        return self

    def _sharing_opts(self) -> str:
        try:
            archive = class_archive(self._cache)
            archive.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # no writable cache: start without the archive
            return ""
        self._archive = archive
        if archive.is_file() and archive.stat().st_size:
            self.class_sharing = "used"
            # A damaged archive kills the JVM; its crash report goes beside the archive, not
            # into whatever folder the emulator was started from.
            report = archive.parent / "hs_err_pid%p.log"
            return f" -XX:SharedArchiveFile={archive} -XX:ErrorFile={report}"
        # One writer at a time (writing costs the JVM a second at exit): whoever creates the
        # lock; a lock left by a writer that died is taken over after ARCHIVE_LOCK_TTL.
        lock = archive.with_name(archive.name + ".lock")
        with contextlib.suppress(OSError):
            if time.time() - lock.stat().st_mtime > ARCHIVE_LOCK_TTL:
                lock.unlink()
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except OSError:
            return ""  # another emulator is writing it: start as before
        self._lock = lock
        # Written by the JVM at exit under a name of its own, then moved into place whole.
        self._archive_tmp = archive.with_name(f"{archive.name}.{os.getpid()}.{id(self)}.tmp")
        self.class_sharing = "writing"
        return f" -XX:ArchiveClassesAtExit={self._archive_tmp}"

    def stop(self, timeout: float = 10.0) -> None:
        proc = self._proc
        super().stop(timeout=timeout)
        tmp, self._archive_tmp = self._archive_tmp, None
        lock, self._lock = self._lock, None
        if tmp is not None and self._archive is not None:
            # Only an archive the JVM finished: it exits 143 on our SIGTERM after writing it;
            # a SIGKILL (the stop's fallback, or a crash test's kill()) may have cut it short.
            finished = proc is not None and proc.returncode in (0, 143)
            with contextlib.suppress(OSError):
                if finished and tmp.stat().st_size:
                    os.replace(tmp, self._archive)
                else:
                    tmp.unlink()
        if lock is not None:
            with contextlib.suppress(OSError):
                lock.unlink()


# -- the delivery policy Terraform deploys -------------------------------------------------------

#: Terraform's defaults for the trigger subscriptions (``local.delivery`` in terraform/pubsub.tf).
DELIVERY_FILE = Path(__file__).resolve().parents[2] / "terraform" / "delivery.json"
#: Pub/Sub's limits on a dead-letter policy and a retry policy.
_ATTEMPTS = range(5, 101)
_MAX_BACKOFF_S = 600.0
_RETENTION = "604800s"  # 7 days, as pubsub.tf and modules/function keep messages


@dataclass(frozen=True)
class DeliveryPolicy:
    """The ``retry_policy`` and ``dead_letter_policy`` of a trigger subscription."""

    max_delivery_attempts: int
    minimum_backoff: str  # a protobuf JSON duration, e.g. "10s"
    maximum_backoff: str

    def __post_init__(self) -> None:
        attempts = self.max_delivery_attempts
        if type(attempts) is not int or attempts not in _ATTEMPTS:
            raise ValueError(
                f"max_delivery_attempts must be an integer from 5 to 100, "
                f"got {self.max_delivery_attempts!r}"
            )
        low, high = _seconds(self.minimum_backoff), _seconds(self.maximum_backoff)
        if not 0 <= low <= high <= _MAX_BACKOFF_S:
            raise ValueError(
                f"backoff must satisfy 0s <= minimum <= maximum <= 600s, "
                f"got {self.minimum_backoff!r}..{self.maximum_backoff!r}"
            )

    def retry_policy(self) -> dict[str, Any]:
        return {
            "minimum_backoff": _duration(self.minimum_backoff),
            "maximum_backoff": _duration(self.maximum_backoff),
        }


def delivery_policy(path: Path = DELIVERY_FILE) -> DeliveryPolicy:
    """The trigger subscriptions' delivery policy, read from terraform/delivery.json."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(DeliveryPolicy)}
    if not isinstance(raw, dict) or set(raw) != fields:
        raise ValueError(f"{path}: expected exactly the keys {sorted(fields)}")
    return DeliveryPolicy(**raw)


_DURATION = re.compile(r"^[0-9]+(\.[0-9]{1,9})?s$")


def _seconds(text: str) -> float:
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"not a duration in seconds such as '10s': {text!r}")
    return float(text[:-1])


def _duration(text: str) -> Any:
    from google.protobuf import duration_pb2

    duration = duration_pb2.Duration()
    duration.FromJsonString(text)
    return duration


# -- topics and subscriptions, named as Terraform names them --------------------------------------


def push_subscription_id(function: str, prefix: str) -> str:
    """``<prefix>-<function-name>-push``: modules/function's ``"${local.full_name}-push"``."""
    return f"{prefix}-{function.replace('_', '-')}-push"


def dead_letter_topic_id(topic_id: str) -> str:
    """``<topic>-dead-letter``: terraform/pubsub.tf's ``local.dead_letter_topics``."""
    return f"{topic_id}-dead-letter"


def hold_subscription_id(topic_id: str) -> str:
    """The pull subscription that keeps a dead-letter topic's messages (``…-dead-letter-hold``)."""
    return f"{dead_letter_topic_id(topic_id)}-hold"


def ensure_topic(publisher: Any, project: str, topic_id: str) -> str:
    """Create ``projects/{project}/topics/{topic_id}`` unless it exists; return its path."""
    from google.api_core.exceptions import AlreadyExists

    path = publisher.topic_path(project, topic_id)
    with contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=path)
    return str(path)


def create_hold_subscription(subscriber: Any, *, project: str, topic_id: str) -> str:
    """The dead-letter topic of ``topic_id`` and its hold subscription, as pubsub.tf creates them:
    a dead-letter topic without a subscription would drop what it receives. Returns its path."""
    from google.api_core.exceptions import AlreadyExists

    path = subscriber.subscription_path(project, hold_subscription_id(topic_id))
    with contextlib.suppress(AlreadyExists):
        subscriber.create_subscription(
            request={
                "name": path,
                "topic": f"projects/{project}/topics/{dead_letter_topic_id(topic_id)}",
                "message_retention_duration": _duration(_RETENTION),
                "retain_acked_messages": True,
                "ack_deadline_seconds": 60,
                "expiration_policy": {},  # never expires
            }
        )
    return str(path)


def create_push_subscription(
    subscriber: Any,
    *,
    project: str,
    topic_id: str,
    subscription_id: str,
    push_endpoint: str,
    policy: DeliveryPolicy,
    ack_deadline: int = 600,
) -> str:
    """modules/function's trigger subscription: push ``topic_id`` to ``push_endpoint`` with
    ``policy``'s retry backoff, dead-lettering to ``<topic>-dead-letter`` after its
    ``max_delivery_attempts``. Returns its path.

    The dead-letter topic must exist (see :func:`create_hold_subscription`). Idempotent: an
    existing subscription is updated to these settings (a restarted function has a new port).
    """
    from google.api_core.exceptions import AlreadyExists
    from google.protobuf import field_mask_pb2

    path = subscriber.subscription_path(project, subscription_id)
    settings: dict[str, Any] = {
        "push_config": {"push_endpoint": push_endpoint},
        "ack_deadline_seconds": ack_deadline,
        "retry_policy": policy.retry_policy(),
        "dead_letter_policy": {
            "dead_letter_topic": f"projects/{project}/topics/{dead_letter_topic_id(topic_id)}",
            "max_delivery_attempts": policy.max_delivery_attempts,
        },
    }
    try:
        subscriber.create_subscription(
            request={
                "name": path,
                "topic": f"projects/{project}/topics/{topic_id}",
                "message_retention_duration": _duration(_RETENTION),
                "expiration_policy": {},
                **settings,
            }
        )
    except AlreadyExists:
        subscriber.update_subscription(
            request={
                "subscription": {"name": path, **settings},
                "update_mask": field_mask_pb2.FieldMask(paths=sorted(settings)),
            }
        )
    return str(path)


def wire_trigger(
    publisher: Any,
    subscriber: Any,
    *,
    project: str,
    topic_id: str,
    subscription_id: str,
    push_endpoint: str,
    policy: DeliveryPolicy | None = None,
    ack_deadline: int = 600,
) -> tuple[str, str]:
    """A function's trigger as Terraform deploys it: the topic, its dead-letter topic with a hold
    subscription, and the push subscription (``policy`` defaults to delivery.json's). Returns
    the paths of the push subscription and of the hold subscription."""
    ensure_topic(publisher, project, topic_id)
    ensure_topic(publisher, project, dead_letter_topic_id(topic_id))
    hold = create_hold_subscription(subscriber, project=project, topic_id=topic_id)
    push = create_push_subscription(
        subscriber,
        project=project,
        topic_id=topic_id,
        subscription_id=subscription_id,
        push_endpoint=push_endpoint,
        policy=policy or delivery_policy(),
        ack_deadline=ack_deadline,
    )
    return push, hold


# -- what the functions log per delivery --------------------------------------------------------


def read_deliveries(*logs: Path) -> list[dict[str, Any]]:
    """The delivery outcomes the event functions (``warden.jobs.entrypoints.run_job_event``,
    ``route_alert_events``) logged in these function logs
    (JSON lines of google-cloud-logging's StructuredLogHandler; anything else is skipped), in
    file order: one per delivery, each with ``message_id``, ``delivery`` ("ok", "refused" or
    "retry"), ``severity`` and, where Pub/Sub sent one, ``delivery_attempt``."""
    found = []
    for path in logs:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:  # a line still being written, or not ours
                continue
            if isinstance(record, dict) and "delivery" in record and "message_id" in record:
                found.append(record)
    return found
