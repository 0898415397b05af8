"""Alert routing, Alertmanager-style.

Pure core (no I/O, no Google imports), re-exported here:

* :mod:`~warden.alerts.inputs` — :class:`Alert` from a Cloud Monitoring incident or a model event.
* :mod:`~warden.alerts.rules` — routing, grouping, silences, inhibition, timing, messages.

Adapters and the use case, imported by their module path (never from this face):

* :mod:`~warden.alerts.state` — groups, their inbox of unfolded changes, the due markers, the
  silences and inhibition sources (``mutes.json``) and the notification log in Cloud Storage
  (through :mod:`warden.store.gcs`).
* :mod:`~warden.alerts.receivers` — Slack, webhooks, Pub/Sub and log receivers.
* :mod:`~warden.alerts.router` — the webhook and Pub/Sub entry use case.

The core may import :mod:`warden.errors` and :mod:`warden.config`; the adapters also the
foundation (logs, settings, clients) and :mod:`warden.store`; the router also :mod:`warden.runtime`.
The routing config itself lives in :mod:`warden.config.alerting`.

Fingerprints (stable identity of an alert across its open and close):

* Cloud Monitoring: ``sha256("monitoring\\0" + incident_id)[:16]`` — an incident's open and
  close notifications share it.
* model-events: ``sha256("model-events\\0kind\\0model\\0version")[:16]``. Model events never
  resolve explicitly; they resolve by timing out (``ends_at = starts_at + 1h``).

Group key: ``route_id + ":" + json(sorted group label pairs)``; objects are named by
``sha256(group_key)[:32]`` so keys of any length map to short, safe object names.
"""

from __future__ import annotations

from warden.alerts.inputs import (
    CONDITION_TYPES,
    DEFAULT_INCIDENT_SEVERITY,
    INCIDENT_SEVERITIES,
    MODEL_EVENT_KINDS,
    MODEL_SEVERITY,
    SEVERITY_LABELS,
    Alert,
    alert_from_incident,
    alert_from_model_event,
    incident_condition_type,
    is_test_notification,
    sanitize_label,
)
from warden.alerts.rules import (
    DeliveryResult,
    RouteMatch,
    Silence,
    alert_from_state,
    alerts_now,
    digest,
    due,
    expire,
    group_id,
    inhibited,
    next_due,
    render_message,
    route_alert,
    to_send,
)

__all__ = [
    "CONDITION_TYPES",
    "DEFAULT_INCIDENT_SEVERITY",
    "INCIDENT_SEVERITIES",
    "MODEL_EVENT_KINDS",
    "MODEL_SEVERITY",
    "SEVERITY_LABELS",
    "Alert",
    "DeliveryResult",
    "RouteMatch",
    "Silence",
    "alert_from_incident",
    "alert_from_model_event",
    "alert_from_state",
    "alerts_now",
    "digest",
    "due",
    "expire",
    "group_id",
    "incident_condition_type",
    "inhibited",
    "is_test_notification",
    "next_due",
    "render_message",
    "route_alert",
    "sanitize_label",
    "to_send",
]
