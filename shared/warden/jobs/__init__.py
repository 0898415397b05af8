"""The use cases the functions run: one module per job, each a function of (runtime, request).

* :mod:`~warden.jobs.entrypoints` — CloudEvent → job, errors → acknowledge or retry.
* :mod:`~warden.jobs.messages` — the job request messages (Scheduler, Pub/Sub push).
* :mod:`~warden.jobs.retrain`, :mod:`~warden.jobs.monitor`, :mod:`~warden.jobs.housekeeping`,
  :mod:`~warden.jobs.backup` (backup and restore), :mod:`~warden.jobs.health`.
* :mod:`~warden.jobs.register` — an externally trained model imported as a version, through
  the retrain's evaluation and gate (``warden register``; no function runs it).
* :mod:`~warden.jobs.dispatch` — run here, or hand the request to a Cloud Run job (``runners``);
  :mod:`~warden.jobs.task` — the job's entry point (``python -m warden.jobs.task``);
  :mod:`~warden.jobs.shards` — a monitor run split over a job execution's tasks.

May import everything below: the runtime, adapters (store, telemetry), core and foundation.
Never imported by them.
"""

__all__ = [
    "backup",
    "dispatch",
    "entrypoints",
    "health",
    "housekeeping",
    "messages",
    "monitor",
    "register",
    "retrain",
    "shards",
    "task",
]
