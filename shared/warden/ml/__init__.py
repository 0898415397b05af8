"""Machine learning, pure: training pipelines, evaluation metrics, the promotion gate, reference
profiles and drift statistics.

* :mod:`~warden.ml.training`, :mod:`~warden.ml.evaluation`, :mod:`~warden.ml.gate`,
  :mod:`~warden.ml.profiles`, :mod:`~warden.ml.drift`.

No I/O and no Google imports. scikit-learn, pandas and numpy are imported inside the modules that
need them, never by this face, so ``import warden.ml.drift`` stays light. May import
:mod:`warden.errors` and :mod:`warden.config`.
"""

__all__ = [
    "drift",
    "evaluation",
    "gate",
    "profiles",
    "training",
]
