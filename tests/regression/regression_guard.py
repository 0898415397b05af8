"""Train the example models the way ``retrain_model`` does, without Cloud Storage.

Shared by ``test_regression.py`` (the guard) and ``refresh.py`` (the deliberate baseline refresh).

The path is production's, step for step (see ``warden.jobs.retrain._run``): the example data is laid
out as daily ``dt=`` partitions by ``warden_local.examples.write_partitions`` and read back by
``warden.store.data.read_training_frame`` (the same parquet/CSV serialisation and column
coercion, with each row's partition day), then ``warden.ml.training.split`` / ``fit`` and
``warden.ml.evaluation.evaluate`` score the candidate on the held-out rows (the newest days, by
default), with the estimator and evaluation settings of the root ``warden.yaml``. Only the
storage client is an in-memory stand-in: it holds bytes, nothing else.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "warden.yaml"
BASELINE = Path(__file__).resolve().with_name("baseline.json")

#: A metric more than this far below its baseline (relative) fails the guard; more than this far
#: above it only suggests a refresh.
TOLERANCE = 0.05
#: Metrics recorded per task; the guarded ones fail the test, the others are reported only.
RECORDED = {"clustering": ("silhouette",), "classification": ("roc_auc", "f1", "accuracy")}
GUARDED = frozenset({"silhouette", "roc_auc", "f1"})

#: The example data: the demo's first week (``warden_local.demo._seed_week_one``).
DATA_END = date(2026, 11, 20)
DATA_DAYS = 7
CUSTOMER_ROWS = 3000
DATA_SEED = 1
REFRESH_HINT = (
    "If (and only if) this change is intended, refresh deliberately: "
    "`make regression-baseline` shows the diff, `make regression-baseline CONFIRM=yes` writes it "
    "(rules in tests/regression/test_regression.py)."
)


# ------------------------------------------------------------------------ storage stand-in


class MemoryStorage:
    """The slice of ``google.cloud.storage.Client`` that write_partitions and the reader use."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._generation = 0

    def bucket(self, name: str) -> _Bucket:
        return _Bucket(self, name)

    def list_blobs(self, bucket: str, prefix: str = "") -> list[SimpleNamespace]:
        return [
            SimpleNamespace(name=name, generation=gen, size=len(data))
            for (b, name), (gen, data) in sorted(self.objects.items())
            if b == bucket and name.startswith(prefix)
        ]


class _Bucket:
    def __init__(self, store: MemoryStorage, name: str) -> None:
        self.store, self.name = store, name

    def blob(self, name: str, generation: int | None = None) -> _Blob:
        return _Blob(self.store, self.name, name, generation)


class _Blob:
    def __init__(self, store: MemoryStorage, bucket: str, name: str, generation: int | None):
        self.store, self.bucket, self.name, self.generation = store, bucket, name, generation

    def upload_from_string(self, data: str | bytes, content_type: str | None = None) -> None:
        self.store._generation += 1
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self.store.objects[(self.bucket, self.name)] = (self.store._generation, payload)

    def download_as_bytes(self) -> bytes:
        generation, payload = self.store.objects[(self.bucket, self.name)]
        if self.generation is not None and self.generation != generation:
            raise KeyError(f"{self.name}#{self.generation}")
        return payload


# ------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Trained:
    model: str
    metrics: dict[str, float]
    train_rows: int
    holdout_rows: int
    estimator: dict[str, Any]


def example_models(config: Any) -> list[str]:
    """The models of warden.yaml that have example data (warden_local.examples.EXAMPLE_DATA)."""
    from warden_local.examples import EXAMPLE_DATA

    return [name for name in config.models if name in EXAMPLE_DATA]


def train(name: str, config: Any | None = None) -> Trained:
    """Seed the example data for ``name``, then read, split, fit and evaluate as retrain does."""
    from warden.config import load_config
    from warden.ml.evaluation import evaluate
    from warden.ml.training import fit, split
    from warden.store.data import ROW_DAY, read_training_frame
    from warden_local.examples import seed_examples

    config = config or load_config(CONFIG)
    cfg = config.model(name)
    storage = MemoryStorage()
    bucket = cfg.data_bucket("regression-data")
    seed_examples(
        storage,
        bucket=bucket,
        end=DATA_END,
        days=DATA_DAYS,
        models=(name,),
        customer_rows=CUSTOMER_ROWS,
        seed=DATA_SEED,
    )
    columns = cfg.features + ([cfg.target] if cfg.target else [])
    frame, _window = read_training_frame(
        storage,  # type: ignore[arg-type]
        bucket=bucket,
        spec=cfg.data,
        columns=columns,
        as_of=DATA_END,
        target=cfg.target,
        categorical=cfg.categorical_features,
        row_days=True,
    )
    parts = split(frame, cfg, days=frame[ROW_DAY])
    candidate = fit(cfg, parts)
    result = evaluate(
        candidate,
        cfg.task,
        parts.X_holdout,
        parts.y_holdout,
        spec=cfg.evaluation,
        positive_label=cfg.positive_label,
    )
    if not result.sane:
        raise AssertionError(f"{name}: the candidate is not sane: {'; '.join(result.problems)}")
    return Trained(
        model=name,
        metrics={k: float(result.metrics[k]) for k in RECORDED[cfg.task]},
        train_rows=len(parts.X_train),
        holdout_rows=len(parts.X_holdout),
        estimator=cfg.estimator.model_dump(by_alias=True, exclude_defaults=True),
    )


def train_all(config: Any | None = None) -> dict[str, Trained]:
    from warden.config import load_config

    config = config or load_config(CONFIG)
    return {name: train(name, config) for name in example_models(config)}


# ------------------------------------------------------------------------------- baseline


def library_versions() -> dict[str, str]:
    import joblib
    import numpy
    import pandas
    import pyarrow
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "joblib": joblib.__version__,
    }


def build_baseline(trained: dict[str, Trained], config: Any) -> dict[str, Any]:
    models = {}
    for name, t in trained.items():
        cfg = config.model(name)
        models[name] = {
            "task": cfg.task,
            "metrics": {k: round(v, 6) for k, v in t.metrics.items()},
            "guarded": sorted(GUARDED & set(t.metrics)),
            "estimator": t.estimator,
            "evaluation": cfg.evaluation.model_dump(),
            "train_rows": t.train_rows,
            "holdout_rows": t.holdout_rows,
        }
    return {
        "schema": 1,
        "created": datetime.now(UTC).date().isoformat(),
        "libraries": library_versions(),
        "data": {
            "customer-segments": (
                f"warden_local.examples.customer_frame({CUSTOMER_ROWS}, seed={DATA_SEED}, "
                "shift=0.0): "
                "synthetic customers from four segments (numpy default_rng)"
            ),
            "breast-cancer-risk": (
                "warden_local.examples.breast_cancer_frame(label_noise=0.0): "
                "scikit-learn's bundled "
                "Wisconsin breast-cancer data (569 rows)"
            ),
            "layout": (
                f"{DATA_DAYS} daily dt= partitions ending {DATA_END.isoformat()}, written by "
                "write_partitions and read by read_training_frame (in-memory storage)"
            ),
            "seed": DATA_SEED,
        },
        "tolerance": TOLERANCE,
        "refresh": "make regression-baseline (dry run), then make regression-baseline CONFIRM=yes",
        "models": models,
    }


def load_baseline(path: Path = BASELINE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def dump_baseline(baseline: dict[str, Any]) -> str:
    return json.dumps(baseline, indent=2, sort_keys=False) + "\n"


@dataclass(frozen=True)
class Verdict:
    model: str
    metric: str
    baseline: float
    now: float
    guarded: bool

    @property
    def change(self) -> float:
        """Relative change, positive when better (all recorded metrics: higher is better)."""
        return (self.now - self.baseline) / abs(self.baseline) if self.baseline else 0.0

    @property
    def regressed(self) -> bool:
        return self.guarded and self.change < -TOLERANCE

    @property
    def improved(self) -> bool:
        return self.change > TOLERANCE

    def line(self) -> str:
        return (
            f"{self.model} {self.metric}: baseline {self.baseline:.4f}, now {self.now:.4f} "
            f"({self.change:+.1%}; tolerance -{TOLERANCE:.0%})"
        )


def compare(baseline: dict[str, Any], trained: dict[str, Trained]) -> list[Verdict]:
    verdicts = []
    for name, entry in baseline["models"].items():
        guarded = set(entry.get("guarded", GUARDED))
        for metric, value in entry["metrics"].items():
            now = trained[name].metrics[metric]
            verdicts.append(Verdict(name, metric, float(value), now, metric in guarded))
    return verdicts


def context(baseline: dict[str, Any], trained: dict[str, Trained], name: str) -> list[str]:
    """What changed since the baseline that may explain a difference (estimator, libraries)."""
    notes = []
    entry = baseline["models"][name]
    if name in trained and entry.get("estimator") != trained[name].estimator:
        notes.append(
            f"  estimator changed: baseline {json.dumps(entry.get('estimator'))}, "
            f"now {json.dumps(trained[name].estimator)}"
        )
    now = library_versions()
    for lib, was in baseline.get("libraries", {}).items():
        if now.get(lib) != was:
            notes.append(
                f"  {lib}: {was} at baseline ({baseline.get('created')}), {now.get(lib)} now"
            )
    return notes
