"""Splitting, fitting and serialising a candidate. Imports scikit-learn lazily."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from warden.config import ModelConfig
from warden.config.estimators import build_estimator
from warden.errors import DataError

#: Fewest held-out rows a champion is compared on when it has seen some of the holdout's days
#: (fewer rows than that, and the comparison is skipped: the floor alone decides).
MIN_COMPARISON_ROWS = 30

RANDOM_HOLDOUT_WARNING = (
    "evaluation.holdout is 'random': the held-out rows come from every day of the window, so "
    "a champion trained on an overlapping window has seen many of them; it is scored only on "
    "held-out rows dated after its training data (the default 'time' holds out the newest days)"
)


@dataclass(frozen=True)
class DayRange:
    """First and last ``dt=`` day of a set of rows."""

    first: date
    last: date

    def to_dict(self) -> dict[str, str]:
        return {"first": self.first.isoformat(), "last": self.last.isoformat()}


@dataclass(frozen=True)
class Split:
    """Training and held-out rows; with each row's partition day when the reader gave them.

    ``train_days`` / ``holdout_days`` are numpy ``datetime64[D]`` arrays aligned with the rows
    (None without days). ``warnings`` go to the manifest and the gate's reasons.
    """

    X_train: Any
    X_holdout: Any
    y_train: Any | None
    y_holdout: Any | None
    method: str = "random"
    train_days: Any | None = None
    holdout_days: Any | None = None
    warnings: tuple[str, ...] = ()

    @property
    def train_range(self) -> DayRange | None:
        """The first and last day of the rows the model is trained on."""
        return _day_range(self.train_days)

    @property
    def holdout_range(self) -> DayRange | None:
        return _day_range(self.holdout_days)

    def describe(self, fraction: float) -> dict[str, Any]:
        """The holdout for the manifest: method, configured fraction, rows, share, days."""
        rows = len(self.X_holdout)
        total = rows + len(self.X_train)
        out: dict[str, Any] = {
            "method": self.method,
            "fraction": fraction,
            "rows": rows,
            "share": round(rows / total, 6) if total else 0.0,
        }
        if self.holdout_days is not None:
            import numpy as np

            out["days"] = int(np.unique(self.holdout_days).shape[0])
            span = self.holdout_range
            if span is not None:
                out.update(span.to_dict())
        return out

    def holdout_subset(self, mask: Any) -> tuple[Any, Any | None]:
        """The held-out rows where ``mask`` (a bool per held-out row) is true, in order."""
        import numpy as np

        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        X = self.X_holdout.iloc[idx] if hasattr(self.X_holdout, "iloc") else self.X_holdout[idx]
        if self.y_holdout is None:
            return X, None
        y = self.y_holdout
        return X, (y.iloc[idx] if hasattr(y, "iloc") else np.asarray(y)[idx])


def _day_range(days: Any | None) -> DayRange | None:
    if days is None or not len(days):
        return None
    return DayRange(first=_to_date(days.min()), last=_to_date(days.max()))


def _to_date(day: Any) -> date:
    return date.fromisoformat(str(day.astype("datetime64[D]")))


def _as_days(days: Any, n: int, name: str) -> Any:
    """``days`` (dates, ISO strings or datetime64, one per row) as a ``datetime64[D]`` array."""
    import numpy as np

    try:
        out = np.asarray(days, dtype="datetime64[D]")
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: the rows' partition days are not dates: {exc}") from None
    if out.shape != (n,):
        raise ValueError(f"{name}: {out.shape} partition days for {n} rows")
    if np.isnat(out).any():
        raise DataError(f"{name}: {int(np.isnat(out).sum())} row(s) have no partition day")
    return out


def split(frame: Any, cfg: ModelConfig, *, days: Any | None = None) -> Split:
    """Training and held-out rows of the configured columns, by ``evaluation.holdout``.

    ``days`` is each row's partition day (the reader's :data:`warden.store.data.ROW_DAY`
    column), required by the ``time`` holdout. ``time`` (the default) holds out the newest days
    of the window: the fewest newest days holding at least ``holdout_fraction`` of the rows, and
    at least one day is left to train on; so a champion trained on an earlier, overlapping window
    can be scored on rows it never saw. ``random`` is a seeded split (stratified for
    classifiers); it records :data:`RANDOM_HOLDOUT_WARNING`. Either way the same data and
    settings give the same held-out rows, so candidate and champion are scored on identical
    rows.
    """
    import numpy as np

    X = model_input(frame, cfg)
    spec = cfg.evaluation
    y = None
    if cfg.task == "classification":
        y = frame[cfg.target]
        classes = sorted(y.unique().tolist(), key=str)
        if len(classes) != 2:
            raise DataError(
                f"{cfg.name}: classification needs exactly two classes in "
                f"{cfg.target!r}, found {len(classes)}: {classes[:10]}"
            )
        if cfg.positive_label not in classes:
            raise DataError(
                f"{cfg.name}: positive_label {cfg.positive_label!r} does not occur "
                f"in {cfg.target!r} (classes: {classes})"
            )
        counts = y.value_counts()
        if counts.min() < 4:
            raise DataError(
                f"{cfg.name}: class {counts.idxmin()!r} has only {counts.min()} rows;"
                " too few to train and evaluate"
            )
    n = len(X)
    row_days = None if days is None else _as_days(days, n, cfg.name)
    if spec.holdout == "time":
        if row_days is None:
            raise ValueError(
                f"{cfg.name}: evaluation.holdout 'time' needs each row's partition day (days=)"
            )
        held = _newest_days(row_days, spec.holdout_fraction, cfg.name)
        train_idx, holdout_idx = np.flatnonzero(~held), np.flatnonzero(held)
        if y is not None:
            _check_classes(cfg, y.iloc[train_idx], y.iloc[holdout_idx], row_days[holdout_idx])
        warnings: tuple[str, ...] = ()
    else:
        from sklearn.model_selection import train_test_split

        # Splitting positions gives exactly the rows that splitting X and y directly gives.
        train_idx, holdout_idx = train_test_split(
            np.arange(n), test_size=spec.holdout_fraction, random_state=spec.seed, stratify=y
        )
        warnings = (RANDOM_HOLDOUT_WARNING,)
    return Split(
        X.iloc[train_idx],
        X.iloc[holdout_idx],
        None if y is None else y.iloc[train_idx],
        None if y is None else y.iloc[holdout_idx],
        method=spec.holdout,
        train_days=None if row_days is None else row_days[train_idx],
        holdout_days=None if row_days is None else row_days[holdout_idx],
        warnings=warnings,
    )


def _newest_days(days: Any, fraction: float, name: str) -> Any:
    """A bool per row: is it on one of the fewest newest days holding ``fraction`` of the rows
    (at least one day, and never every day)?"""
    import numpy as np

    unique, counts = np.unique(days, return_counts=True)  # oldest day first
    if unique.shape[0] < 2:
        only = f" ({_to_date(unique[0]).isoformat()})" if unique.shape[0] else ""
        raise DataError(
            f"{name}: the time-based holdout holds out the newest days of the window, and the "
            f"window has data on {unique.shape[0]} day(s){only}; it needs at least 2 (one to "
            "train on, one to hold out). Widen data.window_days, or set evaluation.holdout: "
            "random (a champion is then scored only on rows dated after its training data)"
        )
    newest_first = np.cumsum(counts[::-1])
    k = int(np.searchsorted(newest_first, fraction * int(counts.sum()), side="left")) + 1
    k = min(k, unique.shape[0] - 1)
    return days >= unique[-k]


def _check_classes(cfg: ModelConfig, y_train: Any, y_holdout: Any, holdout_days: Any) -> None:
    """Both classes on both sides of a time split, or a clear error saying which days."""
    span = _day_range(holdout_days)
    days = f"dt={span.first}..dt={span.last}" if span else "the held-out days"
    for part, values in (("held-out days " + days, y_holdout), ("training days", y_train)):
        found = sorted(values.unique().tolist(), key=str)
        if len(found) < 2:
            raise DataError(
                f"{cfg.name}: the time-based holdout's {part} hold only class "
                f"{found[0] if found else None!r} of {cfg.target!r}; both classes are needed "
                "to train and to score. Widen data.window_days, or set evaluation.holdout: random"
            )


def trained_through(manifest: Mapping[str, Any]) -> tuple[date, str] | None:
    """The last day of data a registered model may have been trained on, and where that comes
    from: ``"train_range"`` (``data.train_range.last``: the rows it was fitted on, recorded since
    the time-based holdout) or ``"window_end"`` (older manifests: the end of the window it read,
    since a random split trained on every day of it). None when the manifest has neither."""
    data = manifest.get("data")
    if not isinstance(data, Mapping):
        return None
    span = data.get("train_range")
    try:
        if isinstance(span, Mapping) and span.get("last"):
            return date.fromisoformat(str(span["last"])), "train_range"
        if data.get("end"):
            return date.fromisoformat(str(data["end"])), "window_end"
    except ValueError:
        return None
    return None


@dataclass(frozen=True)
class ChampionRows:
    """The held-out rows a champion may be scored on: those dated after the last day it may
    have trained on (:func:`trained_through`). ``problem`` says why it cannot be scored on
    unseen rows (then ``mask`` is None and the gate decides on the floor alone)."""

    mask: Any | None
    rows: int
    holdout_rows: int
    trained_through: date | None
    source: str | None
    problem: str | None = None
    first: date | None = None
    last: date | None = None

    @property
    def everything(self) -> bool:
        """Every held-out row is unseen by the champion (the usual case with ``time``)."""
        return self.problem is None and self.rows == self.holdout_rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "holdout_rows": self.holdout_rows,
            "after": self.trained_through.isoformat() if self.trained_through else None,
            "source": self.source,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "problem": self.problem,
        }


def champion_rows(parts: Split, manifest: Mapping[str, Any]) -> ChampionRows:
    """Which held-out rows the champion described by ``manifest`` may be scored on.

    Only rows dated after its training data: a model scored on rows it was fitted on looks
    better than it is. When all held-out rows qualify, that is the whole holdout. When only some
    do, they are used if there are at least :data:`MIN_COMPARISON_ROWS` of them (and both
    classes, for a classifier): candidate and champion are then both scored on those rows. When
    none do, or too few, ``problem`` says so.
    """
    import numpy as np

    total = len(parts.X_holdout)
    found = trained_through(manifest)
    through, source = found if found else (None, None)

    def refused(problem: str) -> ChampionRows:
        return ChampionRows(None, 0, total, through, source, problem)

    if parts.holdout_days is None:
        return refused("the held-out rows' days are unknown")
    if through is None:
        return refused("its manifest records neither its training days nor its data window")
    mask = parts.holdout_days > np.datetime64(through, "D")
    rows = int(mask.sum())
    what = "the last day of its training data" if source == "train_range" else "its window's end"
    if rows == 0:
        return refused(f"all {total:,} held-out rows are dated on or before {through} ({what})")
    if rows < total:
        if rows < MIN_COMPARISON_ROWS:
            return refused(
                f"only {rows:,} of the {total:,} held-out rows are dated after {through} "
                f"({what}); fewer than {MIN_COMPARISON_ROWS} is too few to compare on"
            )
        if parts.y_holdout is not None:
            classes = np.unique(np.asarray(parts.y_holdout)[mask])
            if classes.shape[0] < 2:
                return refused(
                    f"the {rows:,} held-out rows dated after {through} ({what}) hold only "
                    f"class {classes[0].item()!r}"
                )
    span = _day_range(parts.holdout_days[mask])
    return ChampionRows(
        mask,
        rows,
        total,
        through,
        source,
        first=span.first if span else None,
        last=span.last if span else None,
    )


MISSING_CATEGORY = "(missing)"
#: The median imputer's name in the pipeline (or in the ``encode`` step with categoricals).
IMPUTE_STEP = "impute_numeric"


def model_input(frame: Any, cfg: ModelConfig) -> Any:
    """The feature frame a model sees: categorical features as plain strings, missing ones as
    an explicit category (the encoder treats it like any other)."""
    X = frame[cfg.features]
    if cfg.categorical_features:
        X = X.copy()
        for col in cfg.categorical_features:
            X[col] = X[col].astype("object").where(X[col].notna(), MISSING_CATEGORY).astype(str)
    return X


def build_model(cfg: ModelConfig) -> Any:
    """The configured estimator behind Warden's own preprocessing: with categorical features,
    one-hot encoding goes first; with ``numeric_missing: impute`` (the default), the numeric
    features' missing values are filled with their training median before the configured steps.
    """
    estimator = build_estimator(cfg.estimator, where=f"models.{cfg.name}.estimator")
    numeric = cfg.numeric_features
    impute = cfg.numeric_missing == "impute" and bool(numeric)
    if not cfg.categorical_features and not impute:
        return estimator
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    steps = list(estimator.steps) if isinstance(estimator, Pipeline) else [("model", estimator)]
    if not cfg.categorical_features:
        return Pipeline([(IMPUTE_STEP, SimpleImputer(strategy="median")), *steps])
    columns: list[tuple[str, Any, list[str]]] = [
        (
            "categorical",
            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
            cfg.categorical_features,
        )
    ]
    if impute:  # numeric columns stay after the categorical ones, in their configured order
        columns.append((IMPUTE_STEP, SimpleImputer(strategy="median"), numeric))
    encode = ColumnTransformer(columns, remainder="passthrough", verbose_feature_names_out=False)
    return Pipeline([("encode", encode), *steps])


def check_numeric_missing(cfg: ModelConfig, data: Split) -> None:
    """Refuse, naming the columns, what the pipeline cannot fit: missing numeric values under
    ``numeric_missing: refuse``, and under ``impute`` a numeric feature with no value at all in
    the training rows (there is no median to fill it with)."""
    numeric = cfg.numeric_features
    if not numeric or not hasattr(data.X_train, "isna"):
        return
    train_missing = data.X_train[numeric].isna().sum()
    where = f"models.{cfg.name}.numeric_missing"
    if cfg.numeric_missing == "impute":
        empty = [c for c in numeric if int(train_missing[c]) == len(data.X_train)]
        if empty and len(data.X_train):
            raise DataError(
                f"{cfg.name}: numeric feature(s) {', '.join(map(repr, empty))} have no values "
                f"in the {len(data.X_train)} training rows: nothing to impute from ({where} is "
                "'impute'); fix the data or remove them from features"
            )
        return
    rows = len(data.X_train) + len(data.X_holdout)
    missing = train_missing + data.X_holdout[numeric].isna().sum()
    found = [f"{c!r} ({int(missing[c])} of {rows} rows)" for c in numeric if int(missing[c])]
    if found:
        raise DataError(
            f"{cfg.name}: numeric feature(s) with missing values: {', '.join(found)}; {where} is "
            "'refuse': fix the data, or set it to 'impute' to fill them with the training median"
        )


def fit(cfg: ModelConfig, data: Split) -> Any:
    check_numeric_missing(cfg, data)
    estimator = build_model(cfg)
    try:
        if cfg.task == "classification":
            estimator.fit(data.X_train, data.y_train)
        else:
            estimator.fit(data.X_train)
    except ValueError as exc:
        # scikit-learn raises ValueError for data it cannot fit (NaN without an imputer, ...):
        # the same data fails the same way, so it is permanent.
        raise DataError(f"{cfg.name}: fitting failed: {exc}") from exc
    return estimator


def dump(estimator: Any) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(estimator, buf, compress=3)
    return buf.getvalue()


def library_versions() -> dict[str, str]:
    import platform

    import joblib
    import numpy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
    }
