"""What Warden tells the outside world while it works: custom metrics to Cloud Monitoring and model
events to Pub/Sub.

* :mod:`~warden.telemetry.metrics` — the metric catalogue and its writer.
* :mod:`~warden.telemetry.events` — the ``model-events`` publisher.

Adapters: clients injected, built lazily. May import the foundation only.
"""

__all__ = [
    "events",
    "metrics",
]
