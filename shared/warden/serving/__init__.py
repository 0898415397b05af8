"""What a serving application needs from Warden: the champion, kept current without a redeploy.

* :mod:`~warden.serving.champion` — :class:`Champion`: loads a model's champion (or a pinned
  version) with its sha256 checked against the manifest, swaps to a new champion when the alias
  moves (checked cheaply: the alias object's generation, at most every ``check_interval``
  seconds, off the request path), keeps serving the last good version when a new one fails to
  load, and reports what a health endpoint needs (:meth:`Champion.status`).
* :mod:`~warden.serving.predlog` — :class:`PredictionLog`: what the model saw and answered,
  batched in memory within a bound and written as Parquet partitions beside the training data
  (``predictions/MODEL/dt=YYYY-MM-DD/``), labels later by request id; never blocks or fails
  the request path.

Serving code imports this in every request path, so it stays light: it may import the foundation
(errors, settings, logs), :mod:`warden.clients` and :mod:`warden.store`; never the configuration
(pydantic), the use cases, telemetry or the router, and never a Pub/Sub or Monitoring client.
scikit-learn arrives only with the first verified artifact ``joblib.load`` unpickles.
"""

from warden.serving.champion import Champion, Loaded
from warden.serving.predlog import PredictionLog

__all__ = ["Champion", "Loaded", "PredictionLog"]
