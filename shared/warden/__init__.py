"""Warden: keep scikit-learn models healthy in production on Google Cloud.

The package is layered; imports point down only (``tests/test_layers.py`` walks the graph):

1. ``functions/NAME/main.py`` (outside the package): thin entry points.
2. Use cases: :mod:`warden.jobs` (retrain, monitor, housekeeping, backup, health),
   :mod:`warden.alerts.router`, :mod:`warden.cli` (not bundled into functions).
3. Wiring: :mod:`warden.runtime` (settings, config and clients, built once, typed); beside it
   :mod:`warden.serving`, what serving applications import (the champion, the prediction log),
   which needs no configuration and stays light.
4. Adapters: :mod:`warden.store` (the one GCS helper, registry, run ledger, data reader),
   :mod:`warden.telemetry` (metrics, events), :mod:`warden.alerts.state`,
   :mod:`warden.alerts.receivers`, :mod:`warden.clients`.
5. Pure core: :mod:`warden.config`, :mod:`warden.ml`, :mod:`warden.alerts` (inputs, rules),
   :mod:`warden.report`, :mod:`warden.factories`.
6. Foundation: :mod:`warden.errors` (the one exception tree), :mod:`warden.settings` (the only
   reader of the environment), :mod:`warden.logs`, :mod:`warden.web`.

Nothing here imports scikit-learn, pandas or Google clients at import time.
"""

__version__ = "0.1.0"
