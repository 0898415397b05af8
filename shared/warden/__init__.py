"""Warden: keep scikit-learn models healthy in production on Google Cloud.

The package is layered; imports point down only:

1. ``functions/NAME/main.py`` (outside the package): thin entry points.
2. Use cases: :mod:`warden.retrain`, :mod:`warden.health`, :mod:`warden.cli`.
3. Adapters: :mod:`warden.registry`, :mod:`warden.datasource`, :mod:`warden.metrics`,
   :mod:`warden.runs`, :mod:`warden.clients`.
4. Pure core: :mod:`warden.config`, :mod:`warden.estimators`, :mod:`warden.evaluation`,
   :mod:`warden.gate`, :mod:`warden.requests`.
5. Foundation: :mod:`warden.errors`, :mod:`warden.logs`, :mod:`warden.settings`.

Nothing here imports scikit-learn, pandas or Google clients at import time.
"""

__version__ = "0.1.0"
