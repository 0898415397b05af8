"""The promotion gate: does a candidate's evaluation earn it the champion's place?

Pure: takes two :class:`~warden.ml.evaluation.Evaluation` objects (scored on the same held-out rows)
and returns a :class:`GateDecision` whose ``reasons`` say, one sentence per check, the numbers
compared and the outcome, so a rejection can be understood from the log line alone.

Rules, all of which must hold:

1. the candidate is sane (not one cluster / one predicted class / NaN scores);
2. its metric is a number (NaN fails) and is ``>= floor``;
3. if a champion was evaluated: ``candidate >= champion - max_relative_drop * |champion|``.
   The margin is relative to the champion's magnitude, so it also works for negative silhouettes.

With no champion (first version), or a champion that could not be loaded or scored
(``champion_error``), the decision rests on rules 1-2 alone and the reasons say so.

Paired comparison. When both evaluations carry per-row values over the same rows of the same data
(silhouette: :func:`~warden.ml.evaluation.paired_difference`), rule 3 is applied to the *paired*
difference D = mean over those rows of (candidate s(i) − champion s(i)): pass iff
``D >= -max_relative_drop * |champion|``. The decision follows this point estimate; its
empirical Bernstein bound B (at the evaluation's confidence) is recorded in ``paired`` and in the
reason, and when the allowed drop lies within D ± B the decision is flagged ``conclusive: false``
with an extra explanatory reason. Why the point estimate and not "reject only if significantly
worse" is argued in docs/evaluation.md: that rule would promote any candidate the sample is too
small to judge. Without per-row values (classification, or evaluations on different rows) rule 3
compares the two metric values, as it always has.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from warden.ml.evaluation import PairedDifference, paired_difference

if TYPE_CHECKING:
    from warden.ml.evaluation import Evaluation

# Absorbs float rounding in "champion - drop * |champion|" so an exactly-at-margin value passes.
_TOLERANCE = 1e-12


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    candidate_value: float | None
    champion_value: float | None
    floor: float
    max_relative_drop: float
    reasons: list[str] = field(default_factory=list)
    champion_version: int | None = None
    champion_error: str | None = None
    #: The paired comparison behind rule 3, when there was one: PairedDifference.to_dict() plus
    #: ``allowed_difference`` (-max_relative_drop * |champion|) and ``conclusive``.
    paired: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("candidate_value", "champion_value", "floor"):
            value = out[key]
            # NaN and infinity are not JSON.
            out[key] = value if value is not None and math.isfinite(value) else None
        return out


def _pair(x: float, y: float, decimals: int = 3) -> tuple[str, str]:
    """Format two numbers with just enough decimals that unequal values never print equal."""
    for digits in range(decimals, 16):
        sx, sy = f"{x:.{digits}f}", f"{y:.{digits}f}"
        if sx != sy or x == y:
            return sx, sy
    return repr(x), repr(y)


def _value(evaluation: Evaluation, metric: str) -> float | None:
    value = evaluation.metrics.get(metric)
    return None if value is None else float(value)


def decide(
    *,
    metric: str,
    floor: float,
    max_relative_drop: float,
    candidate: Evaluation,
    champion: Evaluation | None,
    champion_error: str | None = None,
    champion_version: int | None = None,
) -> GateDecision:
    """Apply the gate rules (module docstring) and explain each check."""
    reasons: list[str] = []
    passed = True
    who = f"champion v{champion_version}" if champion_version is not None else "the champion"

    if candidate.sane:
        reasons.append("candidate passed its sanity checks: ok")
    else:
        passed = False
        problems = "; ".join(candidate.problems) or "no details"
        reasons.append(f"candidate failed its sanity checks ({problems}): rejected")

    cand = _value(candidate, metric)
    usable = cand is not None and math.isfinite(cand)
    if cand is None:
        passed = False
        reasons.append(f"candidate has no {metric} value: rejected")
    elif not usable:
        passed = False
        reasons.append(f"candidate {metric} is {cand}, not a number that can pass: rejected")
    else:
        sc, sf = _pair(cand, floor)
        if cand >= floor:
            reasons.append(f"{metric} {sc} >= floor {sf}: ok")
        else:
            passed = False
            reasons.append(f"{metric} {sc} < floor {sf}: rejected")

    champ: float | None = None
    paired: dict[str, Any] | None = None
    if champion_error is not None:
        reasons.append(
            f"{who} could not be evaluated ({champion_error}): deciding on the floor alone"
        )
    elif champion is None:
        reasons.append("no champion yet: first version")
    else:
        champ = _value(champion, metric)
        if champ is None or not math.isfinite(champ):
            shown = "no value" if champ is None else str(champ)
            reasons.append(f"{who} has no usable {metric} ({shown}): deciding on the floor alone")
            champ = None
        elif cand is not None and usable:
            pair = paired_difference(candidate, champion)
            if pair is None or pair.metric != metric:
                passed &= _versus_champion(reasons, metric, cand, champ, max_relative_drop, who)
            else:
                ok, paired = _paired_versus_champion(
                    reasons, metric, cand, champ, max_relative_drop, who, pair
                )
                passed &= ok

    return GateDecision(
        passed=passed,
        metric=metric,
        candidate_value=cand,
        champion_value=champ,
        floor=floor,
        max_relative_drop=max_relative_drop,
        reasons=reasons,
        champion_version=champion_version,
        champion_error=champion_error,
        paired=paired,
    )


def _versus_champion(
    reasons: list[str], metric: str, cand: float, champ: float, max_drop: float, who: str
) -> bool:
    """Relative-drop check; appends its reason and returns whether it passed."""
    sc, sh = _pair(cand, champ)
    if cand >= champ:
        reasons.append(f"{metric} {sc} >= {who}'s {sh}: ok")
        return True
    threshold = champ - max_drop * abs(champ)
    ok = cand >= threshold - _TOLERANCE * max(1.0, abs(champ))
    verdict = "ok" if ok else "rejected"
    if champ == 0.0:
        reasons.append(f"{metric} {sc} is below {who}'s {sh}, which allows no drop: {verdict}")
        return ok
    drop, allowed = _pair(100.0 * (champ - cand) / abs(champ), 100.0 * max_drop, decimals=1)
    reasons.append(f"{metric} {sc} is {drop}% below {who}'s {sh} (allowed {allowed}%): {verdict}")
    return ok


def _paired_versus_champion(
    reasons: list[str],
    metric: str,
    cand: float,
    champ: float,
    max_drop: float,
    who: str,
    pair: PairedDifference,
) -> tuple[bool, dict[str, Any]]:
    """Rule 3 on the paired difference; appends its reason(s), returns (passed, paired record)."""
    diff, bound = pair.difference, pair.error_bound
    allowed = 0.0 - max_drop * abs(champ)  # 0.0, not -0.0, for a zero champion
    conclusive = pair.exact or abs(diff - allowed) > bound
    record = {**pair.to_dict(), "allowed_difference": allowed, "conclusive": conclusive}
    if pair.exact:
        # Every row was scored: the paired difference is the difference of the exact values.
        return _versus_champion(reasons, metric, cand, champ, max_drop, who), record

    level = f"{100 * pair.confidence:g}%"
    paired_text = (
        f"paired difference {diff:+.4f} ± {bound:.4f} over the same "
        f"{pair.n_evaluated:,} sampled rows, {level} bound"
    )
    sc, sh = _pair(cand, champ)
    if diff >= 0.0:
        ok = True
        reasons.append(f"{metric} {sc} >= {who}'s {sh} ({paired_text}): ok")
    else:
        ok = diff >= allowed - _TOLERANCE * max(1.0, abs(champ))
        verdict = "ok" if ok else "rejected"
        if champ == 0.0:
            reasons.append(
                f"{metric} {sc} is below {who}'s {sh}, which allows no drop ({paired_text}): "
                f"{verdict}"
            )
        else:
            drop, limit = _pair(-100.0 * diff / abs(champ), 100.0 * max_drop, decimals=1)
            reasons.append(
                f"{metric} {sc} is {drop}% below {who}'s {sh} (allowed {limit}%; {paired_text}): "
                f"{verdict}"
            )
    if not conclusive:
        reasons.append(
            f"the allowed drop ({allowed:+.4f}) lies within the {level} bound of the paired "
            f"difference ({diff:+.4f} ± {bound:.4f}): too close to call on {pair.n_evaluated:,} "
            f"of {pair.n_rows:,} rows, so the point estimate decides "
            "(a larger evaluation.silhouette_sample_size narrows the bound)"
        )
    return ok, record
