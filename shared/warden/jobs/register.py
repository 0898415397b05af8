"""Use case: import an externally trained scikit-learn model as a new version of a model.

``warden register MODEL FILE`` runs this in-process. The imported model goes through what a
retrain's candidate goes through, by the same code (:mod:`warden.jobs.retrain`): the model's
configured data window is read and split the same way, the model and the champion are
evaluated on the same held-out rows, the gate decides, the version is written with its profile,
report and manifest (written last), and ``champion`` moves only if the gate passed. What differs:

1. Before anything is written, the file is checked against the model's configuration:
   it must load, accept exactly the configured feature columns (``feature_names_in_`` when the
   estimator has it, else ``n_features_in_``), and survive a trial prediction on the configured
   data (``predict_proba`` with the configured ``positive_label`` among ``classes_`` for a
   classifier, ``predict`` for clustering). A file pickled by another scikit-learn version is
   refused: the functions would load it with this one. Any of these is a
   :class:`~warden.errors.DataError` and nothing is registered.
2. The manifest records where it came from: ``source`` = ``{"kind": "register", "file": NAME,
   "sha256": ..., "size": ..., "estimator": CLASS, "feature_names_checked": BOOL}`` (False: it
   was fitted on arrays, so only the number of features could be checked). A file whose sha256
   is already the source of a visible version of the model is refused
   (:class:`~warden.errors.PermanentError` naming that version) unless ``again`` is set. This
   check reads the manifests; it is not a lock.
3. Its training data is unknown, so the manifest's ``data.train_rows`` and ``data.train_range``
   are None: a later retrain then scores it only on held-out rows dated after this window's end
   (:func:`warden.ml.training.champion_rows`).
4. ``force`` (an operator's reason) promotes a version whose gate failed, whatever the champion
   is by then; history records "forced past a failed gate: REASON" and the operator.

No run ledger: this is an operator's command, not a delivered message.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warden.errors import DataError, PermanentError
from warden.jobs.retrain import announce_and_promote, compare, read_data, write_version
from warden.logs import fields
from warden.runtime import Runtime

if TYPE_CHECKING:
    from warden.config import ModelConfig

log = logging.getLogger(__name__)

SOURCE_KIND = "register"
#: Held-out rows the trial prediction is made on (the evaluation then scores every one).
TRIAL_ROWS = 5


@dataclass
class RegisterOutcome:
    model: str
    status: str  # registered
    version: int
    promoted: bool
    forced: bool
    gate: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    champion_version: int | None = None
    source: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register_file(
    rt: Runtime,
    model: str,
    path: Path,
    *,
    as_of: date | None = None,
    force: str | None = None,
    reason: str | None = None,
    again: bool = False,
    actor: str = "register",
) -> RegisterOutcome:
    """Import the joblib file at ``path`` as a new version of ``model`` (module docstring).

    ``as_of``: the last day of the data window it is evaluated on (default: today, UTC).
    ``force``: promote even if the gate fails, for this reason. ``reason``: recorded in the
    history when the gate passes and it is promoted. ``again``: register a file already
    registered for this model."""
    cfg = rt.config.model(model)
    raw = _read(path)
    digest = hashlib.sha256(raw).hexdigest()
    if not again:
        _refuse_repeat(rt, cfg.name, digest, path.name)
    estimator = _load(raw, path.name)

    as_of = as_of or datetime.now(UTC).date()
    data = read_data(rt, cfg, as_of)
    check_estimator(cfg, estimator, data.parts.X_holdout, where=path.name)
    comparison = compare(rt, cfg, data.parts, estimator)

    run_id = f"register-{uuid.uuid4().hex[:12]}"
    source = {
        "kind": SOURCE_KIND,
        "file": path.name,
        "sha256": digest,
        "size": len(raw),
        "estimator": _class_name(estimator),
        # False: fitted without column names, so only the number of features was checked.
        "feature_names_checked": getattr(estimator, "feature_names_in_", None) is not None,
    }
    request = {
        "model": cfg.name,
        "reason": SOURCE_KIND,
        "as_of": as_of.isoformat(),
        "requested_at": datetime.now(UTC).isoformat(),
        "actor": actor,
    }
    registry = rt.registry()
    version = registry.claim_version(cfg.name, run_id)
    write_version(
        rt,
        cfg,
        version=version,
        run_id=run_id,
        request=request,
        estimator=describe_estimator(estimator),
        candidate=estimator,
        data=data,
        comparison=comparison,
        fitted_here=False,
        extra={"source": source},
    )
    gate = comparison.decision.to_dict()
    why = f"register {path.name}" + (f": {reason}" if reason else "")
    promoted, detail = announce_and_promote(
        rt,
        cfg.name,
        version=version,
        gate=gate,
        champion_version=comparison.champion_version,
        metrics=comparison.candidate.metrics,
        run_id=run_id,
        actor=actor,
        reason=f"gate passed ({why})",
        forced=force,
    )
    forced = promoted and not gate.get("passed")
    log.info(
        "imported %s as %s v%d",
        path.name,
        cfg.name,
        version,
        extra=fields(model=cfg.name, version=version, promoted=promoted, forced=forced),
    )
    return RegisterOutcome(
        model=cfg.name,
        status="registered",
        version=version,
        promoted=promoted,
        forced=forced,
        gate=gate,
        metrics=comparison.candidate.metrics,
        champion_version=comparison.champion_version,
        source=source,
        run_id=run_id,
        detail=detail,
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _refuse_repeat(rt: Runtime, model: str, digest: str, name: str) -> None:
    for manifest in rt.registry().versions(model):
        source = manifest.get("source")
        if isinstance(source, dict) and source.get("sha256") == digest:
            raise PermanentError(
                f"{model}: {name} (sha256 {digest[:16]}…) is already registered as "
                f"v{manifest.get('version')} from {source.get('file')!r}; pass --again to "
                "register the same file as another version"
            )


def _load(raw: bytes, name: str) -> Any:
    """Unpickle the file (joblib, as the registry loads artifacts). Refuses a file pickled by
    another scikit-learn version: the functions would load it with this one."""
    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            estimator = joblib.load(io.BytesIO(raw))
        except Exception as exc:  # unpickling can fail in any way: the file is not a model
            raise DataError(
                f"{name} is not a joblib file this environment can load: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    for warning in caught:
        if isinstance(warning.message, InconsistentVersionWarning):
            raise DataError(
                f"{name} was pickled by another scikit-learn version ({warning.message}); "
                "train and save it with the scikit-learn version Warden runs "
                "(see `warden health`: libraries)"
            )
    return estimator


def check_estimator(cfg: ModelConfig, estimator: Any, X: Any, *, where: str) -> None:
    """Raise :class:`DataError` unless ``estimator`` is a fitted model of ``cfg``'s task that
    takes exactly ``cfg``'s features (frame ``X``, in the configured order) and predicts on a
    few of ``X``'s rows."""
    configured = list(cfg.features)
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        seen = [str(n) for n in names]
        if seen != configured:
            missing = [c for c in configured if c not in seen]
            extra = [c for c in seen if c not in configured]
            problems = []
            if missing:
                problems.append(f"missing {missing}")
            if extra:
                problems.append(f"not configured {extra}")
            if not problems:
                problems.append(f"in another order: {seen}")
            raise DataError(
                f"{where}: the estimator was fitted on features that are not "
                f"{cfg.name}'s configured ones ({'; '.join(problems)}); fit it on exactly "
                f"models.{cfg.name}.features, in that order"
            )
    else:
        n = getattr(estimator, "n_features_in_", None)
        if n is not None and int(n) != len(configured):
            raise DataError(
                f"{where}: the estimator takes {int(n)} features; {cfg.name} configures "
                f"{len(configured)} (models.{cfg.name}.features)"
            )

    if cfg.task == "classification":
        if not hasattr(estimator, "predict_proba"):
            raise DataError(
                f"{where}: {_class_name(estimator)} has no predict_proba; a classification "
                "model must give class probabilities (the gate scores ROC AUC)"
            )
        classes = getattr(estimator, "classes_", None)
        if classes is None or cfg.positive_label not in list(classes):
            shown = (
                None
                if classes is None
                else [c.item() if hasattr(c, "item") else c for c in classes]
            )
            raise DataError(
                f"{where}: the estimator's classes_ {shown} do not include {cfg.name}'s "
                f"positive_label {cfg.positive_label!r}"
            )
        method = "predict_proba"
    else:
        if not hasattr(estimator, "predict"):
            raise DataError(
                f"{where}: {_class_name(estimator)} has no predict; a clustering model must "
                "assign rows to clusters"
            )
        method = "predict"

    sample = X.iloc[:TRIAL_ROWS] if hasattr(X, "iloc") else X[:TRIAL_ROWS]
    try:
        out = getattr(estimator, method)(sample)
    except Exception as exc:  # any failure here means it cannot score the configured data
        raise DataError(
            f"{where}: {method} failed on {len(sample)} rows of {cfg.name}'s configured features: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if len(out) != len(sample):
        raise DataError(f"{where}: {method} returned {len(out)} results for {len(sample)} rows")


def _class_name(estimator: Any) -> str:
    kind = type(estimator)
    return f"{kind.__module__}.{kind.__qualname__}"


def describe_estimator(estimator: Any) -> dict[str, Any]:
    """The manifest's ``estimator`` for an imported model: its class and, for a pipeline, its
    steps' classes (a retrain records the configured spec instead)."""
    out: dict[str, Any] = {"imported": _class_name(estimator)}
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        out["steps"] = [
            {"name": str(name), "class": type(step).__name__}
            for name, step in steps
            if isinstance(name, str)
        ]
    return out
