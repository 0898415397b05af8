"""Use case: retrain one model, evaluate it against the champion, register it, maybe promote it.

Order matters for "no partial state is ever visible":

1. claim the request in the run ledger (a redelivery stops here);
2. read data, fit, evaluate candidate and champion on the same held-out rows, decide the gate —
   nothing is written to the registry yet, so any failure so far leaves no trace but the ledger;
3. claim a version number and record it in the run's marker (a checkpoint), write the immutable
   files, write the manifest last (the commit point);
4. move ``champion`` by compare-and-swap if the gate passed and the champion is still the one we
   compared against;
5. record the outcome (ledger, status), then metrics and events (best effort: the version is
   already safe, and the run ledger keeps a redelivery from training again).

Resumable after register: when an attempt dies or fails retryably after step 3 (a crash, a 503,
a lost race at promote), the redelivery inherits the checkpoint. If that version's manifest
exists it carries on from it — the gate decision recorded in the manifest, promote or not,
events, done — and never trains or registers again. A number claimed but never committed is an
orphan (housekeeping sweeps it); the redelivery trains afresh.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from warden.errors import DataError, IntegrityError, PermanentError
from warden.jobs.messages import RunRequest
from warden.logs import fields
from warden.runtime import Runtime
from warden.store.runs import Finished, PriorRun, Run, run_once

if TYPE_CHECKING:
    from warden.config import ModelConfig
    from warden.ml.evaluation import Evaluation
    from warden.ml.gate import GateDecision
    from warden.ml.training import ChampionRows, Split
    from warden.store.data import DataWindow
    from warden.store.registry import AliasState

log = logging.getLogger(__name__)

JOB = "retrain"


@dataclass
class RetrainOutcome:
    model: str
    status: str  # registered | duplicate
    version: int | None = None
    promoted: bool = False
    gate: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    detail: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retrain(
    request: RunRequest,
    rt: Runtime,
    *,
    actor: str = "retrain_model",
    owner: str | None = None,
    lease: timedelta | None = None,
) -> RetrainOutcome:
    cfg = rt.config.model(request.model)
    started = time.monotonic()

    def duplicate(prior: PriorRun) -> RetrainOutcome:
        result = prior.record.get("result", {})
        return RetrainOutcome(
            model=cfg.name,
            status="duplicate",
            version=result.get("version"),
            promoted=bool(result.get("promoted")),
            run_id=str(prior.record.get("run_id", "")),
            detail=f"already {prior.status}",
        )

    def failed(exc: PermanentError, run_id: str) -> None:
        rt.events().try_publish(
            "failed",
            cfg.name,
            job=JOB,
            error=str(exc)[:2000],
            run_id=run_id,
            request=request.to_dict(),
        )
        _best_effort_metrics(rt, cfg.name, {"run/success": 0.0}, job=True)

    def finished(o: RetrainOutcome) -> Finished:
        result = {"version": o.version, "promoted": o.promoted}
        return Finished(marker=result, status=result)

    outcome = run_once(
        rt.ledger(),
        cfg.name,
        JOB,
        request.key,
        work=lambda run: _run(request, rt, run, actor=actor),
        finished=finished,
        duplicate=duplicate,
        failed=failed,
        owner=owner,
        lease=lease,
    )
    if outcome.status == "duplicate":
        return outcome
    duration = time.monotonic() - started
    numeric = {
        f"model/{k}": float(v)
        for k, v in outcome.metrics.items()
        if isinstance(v, int | float) and k in {"silhouette", "roc_auc", "f1", "accuracy"}
    }
    _best_effort_metrics(rt, cfg.name, numeric, version=outcome.version)
    _best_effort_metrics(
        rt,
        cfg.name,
        {
            "retrain/duration": duration,
            "run/success": 1.0,
            "model/promoted": float(outcome.promoted),
        },
        job=True,
    )
    return outcome


def _run(request: RunRequest, rt: Runtime, run: Run, *, actor: str) -> RetrainOutcome:
    claimed = run.resumed.get("version")
    if claimed is not None:
        resumed = _resume(request, rt, run, int(claimed), actor=actor)
        if resumed is not None:
            return resumed
    return _train(request, rt, run, actor=actor)


def _resume(
    request: RunRequest, rt: Runtime, run: Run, version: int, *, actor: str
) -> RetrainOutcome | None:
    """Carry on after an earlier attempt of this request claimed ``version``: from its manifest
    if it was registered; None if it never was (then train afresh)."""
    from warden.errors import VersionNotFound

    cfg = rt.config.model(request.model)
    try:
        manifest = rt.registry().manifest(cfg.name, version)
    except VersionNotFound:
        log.warning(
            "an earlier attempt claimed v%d but never registered it; training afresh",
            version,
            extra=fields(model=cfg.name, version=version, previous_run_id=run.run_id),
        )
        return None
    gate = dict(manifest.get("gate") or {})
    log.info(
        "resuming after register: v%d is this request's version",
        version,
        extra=fields(model=cfg.name, version=version, gate_passed=gate.get("passed")),
    )
    metrics = dict((manifest.get("metrics") or {}).get("candidate") or {})
    champion = manifest.get("champion_version")
    return _after_register(
        request,
        rt,
        version=version,
        gate=gate,
        champion_version=None if champion is None else int(champion),
        metrics=metrics,
        run_id=str(manifest.get("run_id") or run.run_id),
        actor=actor,
    )


def _train(request: RunRequest, rt: Runtime, run: Run, *, actor: str) -> RetrainOutcome:
    from warden.ml.training import fit

    cfg = rt.config.model(request.model)
    data = read_data(rt, cfg, request.as_of)
    candidate = fit(cfg, data.parts)
    comparison = compare(rt, cfg, data.parts, candidate)
    version = rt.registry().claim_version(cfg.name, run.run_id)
    run.checkpoint(version=version)  # before anything of the version is written
    write_version(
        rt,
        cfg,
        version=version,
        run_id=run.run_id,
        request=request.to_dict(),
        estimator=cfg.estimator.model_dump(by_alias=True, exclude_defaults=True),
        candidate=candidate,
        data=data,
        comparison=comparison,
    )
    return _after_register(
        request,
        rt,
        version=version,
        gate=comparison.decision.to_dict(),
        champion_version=comparison.champion_version,
        metrics=comparison.candidate.metrics,
        run_id=run.run_id,
        actor=actor,
    )


def _after_register(
    request: RunRequest,
    rt: Runtime,
    *,
    version: int,
    gate: dict[str, Any],
    champion_version: int | None,
    metrics: dict[str, Any],
    run_id: str,
    actor: str,
) -> RetrainOutcome:
    """Events, then promote if the gate passed and the champion is still the one compared
    against. Safe to repeat: a promote already done is kept (the alias is on ``version``)."""
    cfg = rt.config.model(request.model)
    promoted, detail = announce_and_promote(
        rt,
        cfg.name,
        version=version,
        gate=gate,
        champion_version=champion_version,
        metrics=metrics,
        run_id=run_id,
        actor=actor,
        reason=f"gate passed ({request.reason})",
    )
    return RetrainOutcome(
        model=cfg.name,
        status="registered",
        version=version,
        promoted=promoted,
        gate=gate,
        run_id=run_id,
        detail=detail,
        metrics=metrics,
    )


def announce_and_promote(
    rt: Runtime,
    model: str,
    *,
    version: int,
    gate: dict[str, Any],
    champion_version: int | None,
    metrics: dict[str, Any],
    run_id: str,
    actor: str,
    reason: str,
    forced: str | None = None,
) -> tuple[bool, str]:
    """Publish ``version_registered``; then promote ``version`` if its gate passed and the
    champion is still ``champion_version`` (history records ``reason``) and publish
    ``promoted``, else publish ``rejected``. Returns (promoted, detail).

    ``forced``: an operator's reason to promote a version whose gate failed, whatever the
    champion is now (history records "forced past a failed gate: ..."; ``promoted`` carries
    ``forced``, ``reason`` and ``actor``, as ``warden promote --force`` publishes it)."""
    registry = rt.registry()
    reasons = [str(r) for r in gate.get("reasons", [])]
    rt.events().try_publish(
        "version_registered",
        model,
        version=version,
        run_id=run_id,
        metrics=metrics,
        gate=gate,
    )
    promoted = False
    detail = "; ".join(reasons)
    if not gate.get("passed") and forced is not None:
        recorded = f"forced past a failed gate: {forced}"
        state = registry.promote(model, version, reason=recorded, actor=actor)
        promoted = state is not None and state.version == version
        if state is not None and promoted:
            rt.events().try_publish(
                "promoted",
                model,
                version=version,
                previous_version=state.previous_version,
                reasons=reasons,
                reason=recorded,
                actor=actor,
                forced=True,
            )
    elif gate.get("passed"):
        state = registry.promote(
            model,
            version,
            reason=reason,
            actor=actor,
            only_if_current=champion_version,
        )
        promoted = state is not None and state.version == version
        if promoted:
            rt.events().try_publish(
                "promoted",
                model,
                version=version,
                previous_version=champion_version,
                reasons=reasons,
            )
        else:
            detail = "gate passed, but the champion changed while this run evaluated; not promoted"
            log.warning(detail, extra=fields(model=model, version=version))
    else:
        rt.events().try_publish(
            "rejected",
            model,
            version=version,
            reasons=reasons,
            champion_version=champion_version,
        )
    return promoted, detail


# -- the steps a retrain shares with `warden register` (warden.jobs.register) ---------------


@dataclass(frozen=True)
class TrainingData:
    """The configured data window as read, and its split into training and held-out rows."""

    frame: Any
    window: DataWindow
    parts: Split


@dataclass(frozen=True)
class Comparison:
    """A candidate and the champion scored on the same held-out rows, and the gate's decision.

    ``gate`` is the candidate's evaluation the gate compared: ``candidate`` itself, or the
    candidate on the part of the holdout the champion had not seen (``champion_rows``).
    """

    champion: AliasState | None
    candidate: Evaluation
    champion_eval: Evaluation | None
    gate: Evaluation
    champion_rows: ChampionRows | None
    decision: GateDecision

    @property
    def champion_version(self) -> int | None:
        return self.champion.version if self.champion else None


def read_data(rt: Runtime, cfg: ModelConfig, as_of: date) -> TrainingData:
    """Read ``cfg``'s data window ending ``as_of`` and split off its holdout
    (``evaluation.holdout``): the same data and settings always give the same held-out rows."""
    from warden.ml.training import split
    from warden.store.data import ROW_DAY, read_training_frame

    columns = cfg.features + ([cfg.target] if cfg.target else [])
    frame, window = read_training_frame(
        rt.clients.storage,
        bucket=cfg.data_bucket(rt.settings.data_bucket),
        spec=cfg.data,
        columns=columns,
        as_of=as_of,
        target=cfg.target,
        categorical=cfg.categorical_features,
        row_days=True,
    )
    return TrainingData(frame, window, split(frame, cfg, days=frame[ROW_DAY]))


def compare(rt: Runtime, cfg: ModelConfig, parts: Split, candidate: Any) -> Comparison:
    """Evaluate ``candidate`` and the current champion on the same held-out rows and decide the
    gate (the split's warnings join its reasons). Writes nothing."""
    from warden.ml.evaluation import evaluate
    from warden.ml.gate import decide
    from warden.ml.training import champion_rows
    from warden.store.data import clip_text

    registry = rt.registry()
    cand_eval = evaluate(
        candidate,
        cfg.task,
        parts.X_holdout,
        parts.y_holdout,
        spec=cfg.evaluation,
        positive_label=cfg.positive_label,
    )

    champion = registry.alias(cfg.name)
    champ_eval = None
    champ_error = None
    champ_rows = None
    # The gate scores both models on the same rows: the held-out rows dated after the
    # champion's training data (docs/evaluation.md, "The holdout"). Usually the whole holdout;
    # when only part of it, the candidate is scored on that part too for the gate.
    gate_eval = cand_eval
    if champion is not None:
        try:
            champ_model, champ_manifest = registry.load(cfg.name, champion.version)
            if list(champ_manifest.get("features", [])) != list(cfg.features):
                raise DataError("its feature list differs from the configured one")
            champ_rows = champion_rows(parts, champ_manifest)
            if champ_rows.problem is not None:
                champ_error = clip_text(
                    f"champion v{champion.version} could not be scored on unseen rows: "
                    f"{champ_rows.problem}"
                )
                log.warning(champ_error, extra=fields(model=cfg.name, version=champion.version))
            else:
                X_cmp, y_cmp = (
                    (parts.X_holdout, parts.y_holdout)
                    if champ_rows.everything
                    else parts.holdout_subset(champ_rows.mask)
                )
                champ_eval = evaluate(
                    champ_model,
                    cfg.task,
                    X_cmp,
                    y_cmp,
                    spec=cfg.evaluation,
                    positive_label=cfg.positive_label,
                )
                if not champ_rows.everything:
                    gate_eval = evaluate(
                        candidate,
                        cfg.task,
                        X_cmp,
                        y_cmp,
                        spec=cfg.evaluation,
                        positive_label=cfg.positive_label,
                        diagnostics=False,  # for the gate only
                    )
        except (IntegrityError, DataError) as exc:
            champ_eval, gate_eval = None, cand_eval
            champ_error = clip_text(f"champion v{champion.version} could not be evaluated: {exc}")
            log.error(champ_error, extra=fields(model=cfg.name, version=champion.version))

    decision = decide(
        metric=cfg.gate_metric,
        floor=cfg.gate_floor,
        max_relative_drop=cfg.gate.max_relative_drop,
        candidate=gate_eval,
        champion=champ_eval,
        champion_error=champ_error,
        champion_version=champion.version if champion else None,
    )
    for warning in parts.warnings:
        log.warning(warning, extra=fields(model=cfg.name))
    if parts.warnings:
        decision = replace(decision, reasons=[*decision.reasons, *parts.warnings])
    return Comparison(champion, cand_eval, champ_eval, gate_eval, champ_rows, decision)


def write_version(
    rt: Runtime,
    cfg: ModelConfig,
    *,
    version: int,
    run_id: str,
    request: dict[str, Any],
    estimator: dict[str, Any],
    candidate: Any,
    data: TrainingData,
    comparison: Comparison,
    fitted_here: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register ``candidate`` as the claimed ``version``: its artifact, ``profile.json``
    (the training window's reference statistics, the baseline metrics and the candidate's
    score or cluster distribution on the holdout), ``report.html``, then the manifest (the
    commit point). Returns the manifest as stored.

    ``fitted_here``: the candidate was fitted on ``data``'s training rows, which the manifest
    records (``data.train_rows``, ``data.train_range``); an imported model's training data is
    unknown, so both are None. ``extra`` adds top-level manifest keys (``source``)."""
    from warden.ml.profiles import build_profile
    from warden.ml.training import dump, library_versions
    from warden.report.version import render_report
    from warden.store.registry import ARTIFACT

    parts, window = data.parts, data.window
    cand_eval, champ_eval, gate_eval = (
        comparison.candidate,
        comparison.champion_eval,
        comparison.gate,
    )
    champ_rows, decision = comparison.champion_rows, comparison.decision
    get_params = getattr(candidate, "get_params", None)
    params = get_params(deep=True) if callable(get_params) else {}
    manifest: dict[str, Any] = {
        "model": cfg.name,
        "version": version,
        "task": cfg.task,
        "created_at": datetime.now(UTC).isoformat(),
        "run_id": run_id,
        "code_version": rt.settings.code_version,
        "libraries": library_versions(),
        "request": request,
        "features": cfg.features,
        "target": cfg.target,
        "estimator": estimator,
        "params": {
            k: repr(v)
            for k, v in params.items()
            if isinstance(v, int | float | str | bool | type(None))
        },
        "data": {
            **window.to_dict(),
            "train_rows": len(parts.X_train) if fitted_here else None,
            "holdout_rows": len(parts.X_holdout),
            # The days of the rows it was fitted on: a later retrain scores it only on rows
            # dated after train_range.last.
            "train_range": (
                parts.train_range.to_dict() if fitted_here and parts.train_range else None
            ),
        },
        "metrics": {
            "candidate": cand_eval.metrics,
            "champion": champ_eval.metrics if champ_eval else None,
        },
        "evaluation": {
            "candidate": cand_eval.details,
            "champion": champ_eval.details if champ_eval else None,
            "candidate_problems": cand_eval.problems,
            "holdout": parts.describe(cfg.evaluation.holdout_fraction),
            "champion_rows": champ_rows.to_dict() if champ_rows else None,
            # The candidate on the champion's rows, when the gate compared on part of the holdout.
            "candidate_on_champion_rows": None if gate_eval is cand_eval else gate_eval.metrics,
            "warnings": list(parts.warnings),
        },
        "champion_version": comparison.champion_version,
        "gate": decision.to_dict(),
        **(extra or {}),
    }
    scores = None
    if cfg.task == "classification" and hasattr(candidate, "predict_proba"):
        pos = list(candidate.classes_).index(cfg.positive_label)
        scores = candidate.predict_proba(parts.X_holdout)[:, pos]
    clusters = None
    if cfg.task == "clustering" and hasattr(candidate, "predict"):
        # The reference for prediction drift on served traffic (warden.ml.drift).
        clusters = candidate.predict(parts.X_holdout)
    profile = build_profile(
        data.frame, cfg, baseline=cand_eval.metrics, scores=scores, clusters=clusters
    )
    files = {
        ARTIFACT: dump(candidate),
        "profile.json": json.dumps(profile, sort_keys=True).encode(),
        "report.html": render_report(manifest, profile).encode(),
    }
    stored = rt.registry().register(cfg.name, version, files, manifest)
    log.info(
        "registered %s v%d",
        cfg.name,
        version,
        extra=fields(
            model=cfg.name, version=version, gate_passed=decision.passed, metrics=cand_eval.metrics
        ),
    )
    return stored


def _best_effort_metrics(
    rt: Runtime,
    model: str,
    values: dict[str, float],
    *,
    version: int | None = None,
    job: bool = False,
) -> None:
    from warden.telemetry.metrics import MetricPoint

    labels = {"model": model}
    if version is not None:
        labels["version"] = str(version)
    if job:
        labels["job"] = JOB
    try:
        rt.metrics().write(
            [MetricPoint(name, value, dict(labels)) for name, value in values.items()]
        )
    except Exception as exc:  # metrics are observability, not state: never fail the run
        log.error("could not write metrics: %s", exc, extra=fields(model=model))
