"""Everything Warden keeps in Cloud Storage, behind one helper.

* :mod:`~warden.store.gcs` — the one storage helper: JSON reads with their generation,
  create-only writes, compare-and-swap with re-read, and owner read-back after a 412.
* :mod:`~warden.store.registry` — versions, aliases (champion), history, verification.
* :mod:`~warden.store.runs` — the run ledger: request keys, leases, job status.
* :mod:`~warden.store.data` — reading a model's training data window (CSV / Parquet).

Adapters: take the storage client injected; may import the foundation (errors, logs, settings)
and the pure core (config, ml); never the use cases (jobs, alerts.router, cli).
"""

__all__ = [
    "data",
    "gcs",
    "registry",
    "runs",
]
