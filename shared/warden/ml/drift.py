"""Data drift of recent rows against a stored reference profile.

Pure core: numpy only at import (pyarrow is imported lazily, and only when an input is already a
pyarrow array). No pandas, no scipy, no I/O.

Two steps, so the expensive one runs once per model version:

1. :func:`build_reference_profile` summarises the training data into a few kilobytes of JSON:
   fine quantile bins for continuous columns, exact value counts for integer-like columns, top
   categories for categorical ones (plus a Bloom filter of the rarer ones, so that a category
   the reference never had can be told from a rare one).
2. :class:`DriftAccumulator` streams current data through it chunk by chunk, keeping only counts
   (memory does not grow with rows), and :meth:`DriftAccumulator.result` compares the counts
   with effect sizes against :class:`DriftThresholds`.

Effect sizes, not p-values: a p-value test rejects any difference once the sample is large
enough (every 1M-row batch "drifts"), while an effect size estimates *how much* the distribution
moved and converges to the true value as rows grow. See ``docs/drift.md`` for the statistics, the
defaults and the measured false-alarm and detection rates.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from warden.errors import ConfigError, DataError

PROFILE_SCHEMA = 2
RESULT_SCHEMA = 1
#: Version of :meth:`DriftAccumulator.state` (shards of a monitor run exchange it).
STATE_SCHEMA = 1
QUANTILES = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.5,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}
#: PSI/JS bins for continuous features: deciles of the reference, merged from the fine bins.
COARSE_BINS = 10
#: Pseudo-count added to every bucket (both sides) before PSI, so empty buckets stay finite.
SMOOTHING = 0.5
#: At most this many buckets per side in the plotting histogram.
HISTOGRAM_BUCKETS = 20
#: Distinct unseen values/categories remembered exactly per feature; the rest are pooled, so a
#: column that turns into an id cannot grow the accumulator without bound.
UNSEEN_CAP = 1000
#: A chunk at least this long is split over threads (numpy releases the GIL while binning).
PARALLEL_MIN_ROWS = 100_000
#: Extra quantile edges inside the outer bins (and mirrored at the top), for tail accuracy.
TAIL_QUANTILES = (0.001, 0.0025, 0.005)
#: Significant digits (relative to the column's range) kept for inner bin edges: keeps the
#: profile small without moving any edge by more than a millionth of the range.
EDGE_DIGITS = 6
#: Categories a profile keeps per feature (the most frequent); the rest are counted as "other".
MAX_CATEGORIES = 50
#: Longest category label kept, in characters. A longer value becomes its first characters,
#: "…#" and 10 hex digits of its sha256: still distinct from every other value, the same on the
#: reference and the current side (so counts and statistics are unchanged), and a profile stays
#: a few KB even when values are 200 KB blobs. Labels are compared in this form everywhere.
MAX_CATEGORY_CHARS = 200
_HASH_CHARS = 10
#: Distinct categories beyond the top :data:`MAX_CATEGORIES` that a profile still recognises, in
#: a Bloom filter (:class:`LabelFilter`): with them, a category the reference never had is told
#: apart from a rare one. A column with more distinct reference values than this is id-like; its
#: profile keeps no filter, and its new-category share is not computed (reported as ``None``).
MAX_KNOWN_TAIL = 20_000
#: The filter's false-positive rate: the chance that one value the reference never had passes
#: for one of its rare categories (and so is not counted as new). 14.4 bits per category: 20,000
#: rare categories make a 36 KB filter (48 KB of base64 in the profile).
KNOWN_FALSE_POSITIVE = 0.001
#: New category values a result names per feature (the most frequent first) ...
NEW_CATEGORY_TOP = 5
#: ... each cut to this many characters (:func:`cap_label`), since they go into events and logs.
NEW_CATEGORY_CHARS = 80

Kind = Literal["continuous", "discrete", "categorical"]
STATISTICS = (
    "psi",
    "js",
    "wasserstein",
    "ks",
    "linf",
    "cramers_v",
    "missing_rate",
    "new_category_share",
)
_APPLIES: dict[str, frozenset[str]] = {
    "continuous": frozenset({"psi", "js", "wasserstein", "ks", "missing_rate"}),
    "discrete": frozenset({"psi", "js", "wasserstein", "ks", "missing_rate"}),
    "categorical": frozenset(
        {"psi", "js", "linf", "cramers_v", "missing_rate", "new_category_share"}
    ),
}


# --------------------------------------------------------------------------------------------
# Thresholds


@dataclass(frozen=True)
class DriftThresholds:
    """Effect-size thresholds: a feature drifts when any configured statistic is ``>=`` its value.

    ``None`` disables a statistic (it is still computed and reported). The defaults come from
    ``bench/drift_calibration.py`` (10k-row reference; 1k, 10k and 1M-row current batches; the
    numbers are in ``docs/drift.md``):

    - ``wasserstein`` 0.1: W1 in reference standard deviations. A 0.2 sd mean shift scores 0.2
      and a 20% scale change 0.12-0.17 depending on shape (long tails score lowest);
      same-distribution batches of 10k rows or more stayed at or below 0.058.
    - ``psi`` 0.2: the usual "significant shift" level, on reference deciles. It catches changes
      of shape that move little mass far, which W1 misses. Same-distribution PSI stayed at or
      below 0.057 even at 1k rows.
    - ``linf`` 0.075: the largest change of a category's share. A 10-point move scores 0.10;
      same-distribution batches stayed at or below 0.027 (0.050 at 1k rows).
    - ``missing_rate`` 0.05: an absolute change of 5 points in the share of missing values.
    - ``new_category_share`` 0.05: the share of a categorical feature's current values that the
      reference never had. The statistics above pool such values with the reference's rare
      categories ("other"), where a new value can hide; this one counts them on their own.
    - ``js``, ``ks``, ``cramers_v``: reported, not judged by default. JS and PSI measure the same
      binned change (JS ≈ √(PSI / 8 ln 2) for small shifts), so gating on both adds false alarms
      without adding detections; KS is weak for scale changes.
    - ``dataset_share`` 0.5: the dataset drifts when at least half of the features do
      (Evidently's rule).
    - ``min_rows`` 1000: fewer current (or reference) rows give an "insufficient data" verdict;
      a feature with fewer non-missing values than this is judged on its missing rate only.

    ``overrides`` maps a feature to ``{statistic: threshold or None}``.
    """

    psi: float | None = 0.2
    js: float | None = None
    wasserstein: float | None = 0.1
    ks: float | None = None
    linf: float | None = 0.075
    cramers_v: float | None = None
    missing_rate: float | None = 0.05
    new_category_share: float | None = 0.05
    dataset_share: float = 0.5
    min_rows: int = 1000
    overrides: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in STATISTICS:
            _check_threshold(name, getattr(self, name), "")
        if not 0.0 < self.dataset_share <= 1.0:
            raise ConfigError(f"drift dataset_share must be in (0, 1], got {self.dataset_share}")
        if self.min_rows < 1:
            raise ConfigError(f"drift min_rows must be >= 1, got {self.min_rows}")
        frozen: dict[str, Mapping[str, float | None]] = {}
        for feature, values in self.overrides.items():
            for name, value in values.items():
                if name not in STATISTICS:
                    raise ConfigError(
                        f"drift override for {feature!r}: unknown statistic {name!r} "
                        f"(expected one of {', '.join(STATISTICS)})"
                    )
                _check_threshold(name, value, f" for {feature!r}")
            frozen[feature] = MappingProxyType(dict(values))
        object.__setattr__(self, "overrides", MappingProxyType(frozen))

    def for_feature(self, name: str, kind: str) -> dict[str, float]:
        """The thresholds that apply to feature ``name`` of ``kind`` (overrides included)."""
        if kind not in _APPLIES:
            raise ConfigError(f"unknown feature kind {kind!r}")
        override = self.overrides.get(name, {})
        out: dict[str, float] = {}
        for stat in STATISTICS:
            if stat not in _APPLIES[kind]:
                continue
            value = override[stat] if stat in override else getattr(self, stat)
            if value is not None:
                out[stat] = float(value)
        return out


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the OS tells it: a task pinned to
    one core binning with two threads only contends with itself)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_threshold(name: str, value: float | None, where: str) -> None:
    if value is not None and not (isinstance(value, int | float) and value > 0):
        raise ConfigError(f"drift threshold {name}{where} must be a positive number or null")


# --------------------------------------------------------------------------------------------
# Column conversion


def _is_arrow(values: Any) -> bool:
    return type(values).__module__.startswith("pyarrow")


def _column(columns: Mapping[str, Any], name: str) -> Any:
    try:
        return columns[name]
    except (KeyError, IndexError, TypeError) as exc:
        raise DataError(f"drift: column {name!r} is missing from the data") from exc


def _numeric_array(values: Any, name: str) -> np.ndarray:
    """1-D numeric numpy array; missing values become NaN (integer arrays stay integer)."""
    if _is_arrow(values):
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            try:
                values = pc.cast(values, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"drift: column {name!r} is not numeric ({values.type})") from exc
        if values.null_count and not pa.types.is_floating(values.type):
            values = pc.cast(values, pa.float64())
        arr: np.ndarray = values.to_numpy(zero_copy_only=False)
    else:
        arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"drift: column {name!r} must be one-dimensional, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind in "iuf":
        return arr
    if kind == "b":
        return arr.astype(np.int8)
    if kind == "O":  # e.g. Python lists with None, pandas nullable arrays
        try:
            return np.array([np.nan if _is_missing(v) else float(v) for v in arr], dtype=float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"drift: column {name!r} is not numeric") from exc
    raise DataError(f"drift: column {name!r} is not numeric (dtype {arr.dtype})")


def _key(value: Any) -> str:
    """Category label as stored in the profile: JSON has only string keys, and long ones are
    capped (:func:`cap_label`)."""
    if isinstance(value, str):
        return cap_label(value)
    if isinstance(value, bytes):
        return cap_label(value.decode("utf-8", "replace"))
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return cap_label(str(value))


def cap_label(label: str, limit: int = MAX_CATEGORY_CHARS) -> str:
    """``label`` itself if it has at most ``limit`` characters, else its first characters, "…#"
    and the first hex digits of its sha256, ``limit`` characters in all. Idempotent."""
    if len(label) <= limit:
        return label
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{label[: limit - _HASH_CHARS - 2]}…#{digest}"


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN (and pandas NA raises TypeError below)
    except (TypeError, ValueError):
        return True


def _category_counts(values: Any, name: str) -> tuple[dict[str, int], int]:
    """Counts per category label and the number of missing values."""
    if _is_arrow(values):
        return _arrow_category_counts(values)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"drift: column {name!r} must be one-dimensional, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind in "US":
        # np.unique sorts fixed-width strings (~120 ms per 1M); hashing in pyarrow is faster.
        try:
            import pyarrow as pa
        except ImportError:  # pragma: no cover - pyarrow is a dependency
            labels, counts = np.unique(arr, return_counts=True)
            return {_key(v): int(c) for v, c in zip(labels, counts, strict=True)}, 0
        return _arrow_category_counts(pa.array(arr))
    if kind in "biuf":
        missing = 0
        if kind == "f":
            present = ~np.isnan(arr)
            missing = int(arr.size - np.count_nonzero(present))
            arr = arr[present]
        labels, counts = np.unique(arr, return_counts=True)
        out: dict[str, int] = {}
        for v, c in zip(labels.tolist(), counts.tolist(), strict=True):
            out[_key(v)] = out.get(_key(v), 0) + c
        return out, missing
    # Object arrays: Counter hashes in C (~35 ms per 1M strings); only distinct keys are Python.
    return _fold_counts(Counter(arr.tolist()).items())


def _fold_counts(items: Any) -> tuple[dict[str, int], int]:
    out: dict[str, int] = {}
    missing = 0
    for value, count in items:
        if _is_missing(value):
            missing += int(count)
        else:
            label = _key(value)
            out[label] = out.get(label, 0) + int(count)
    return out, missing


def _arrow_category_counts(values: Any) -> tuple[dict[str, int], int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    total: dict[str, int] = {}
    missing = 0
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        counted = pc.value_counts(chunk)  # works on dictionary arrays without decoding rows
        labels = counted.field("values").to_pylist()
        counts = counted.field("counts").to_numpy()
        part, gone = _fold_counts(zip(labels, counts.tolist(), strict=True))
        missing += gone
        for label, count in part.items():
            if count:
                total[label] = total.get(label, 0) + count
    return total, missing


def _length(values: Any) -> int:
    try:
        return len(values)
    except TypeError as exc:
        raise DataError("drift: columns must be array-like") from exc


# --------------------------------------------------------------------------------------------
# Reference profile


def build_reference_profile(
    columns: Mapping[str, Any],
    *,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    bins: int = 100,
    max_discrete: int = 50,
    max_categories: int = MAX_CATEGORIES,
) -> dict[str, Any]:
    """Summarise reference (training) data into a JSON-serialisable profile of a few KB.

    ``columns`` maps names to 1-D arrays (numpy, lists, pyarrow arrays; a pandas DataFrame or a
    pyarrow Table also works). Numeric columns with at most ``max_discrete`` distinct values that
    are integers (or repeat at least 20 times each on average, e.g. a 0.5-step rating) keep exact
    value counts ("discrete"); the others keep ``bins`` equal-mass quantile bins, the two outer
    ones split at the 0.1%, 0.25% and 0.5% quantiles from each end ("continuous").
    Categorical columns keep their ``max_categories`` most frequent categories and an ``other``
    count for the rest; a label longer than :data:`MAX_CATEGORY_CHARS` is stored capped
    (:func:`cap_label`), so the profile's size does not depend on the values' length. When
    there is a rest, ``tail`` holds its number of ``distinct`` categories and a
    :class:`LabelFilter` of them (``filter``; None beyond :data:`MAX_KNOWN_TAIL`), which tells
    a current value the reference never had from a rare one.
    """
    if bins < 2 or max_discrete < 1 or max_categories < 1:
        raise ConfigError("drift profile: bins must be >= 2, max_discrete and max_categories >= 1")
    names = [*numeric, *categorical]
    if not names:
        raise ConfigError("drift profile: no features given")
    if len(set(names)) != len(names):
        raise ConfigError("drift profile: a feature is listed twice (numeric and categorical?)")
    lengths = {name: _length(_column(columns, name)) for name in names}
    rows = next(iter(lengths.values()))
    if any(n != rows for n in lengths.values()):
        raise DataError(f"drift profile: columns have different lengths: {lengths}")
    features: dict[str, Any] = {}
    for name in numeric:
        values = _numeric_array(_column(columns, name), name)
        features[name] = _numeric_profile(values, bins, max_discrete)
    for name in categorical:
        counts, missing = _category_counts(_column(columns, name), name)
        features[name] = _categorical_profile(counts, missing, max_categories)
    return {"schema": PROFILE_SCHEMA, "rows": rows, "bins": bins, "features": features}


def _base(count: int, missing: int) -> dict[str, Any]:
    n = count + missing
    return {"count": count, "missing": missing, "missing_rate": missing / n if n else 0.0}


def _numeric_profile(values: np.ndarray, bins: int, max_discrete: int) -> dict[str, Any]:
    x = values.astype(float, copy=False)
    finite = x[np.isfinite(x)]
    base = _base(int(finite.size), int(x.size - finite.size))
    if finite.size == 0:
        return {"kind": "continuous", **base, "edges": [], "counts": []}
    moments: dict[str, Any] = {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "quantiles": {k: float(v) for k, v in zip(QUANTILES, _quantiles(finite), strict=True)},
    }
    distinct, counts = np.unique(finite, return_counts=True)
    integer = bool(np.all(distinct == np.round(distinct)))
    repeated = finite.size >= 20 * distinct.size
    if distinct.size == 1 or (distinct.size <= max_discrete and (integer or repeated)):
        shown = [int(v) for v in distinct] if integer else distinct.tolist()
        return {
            "kind": "discrete",
            **base,
            **moments,
            "values": shown,
            "counts": counts.tolist(),
        }
    edges = _quantile_edges(finite, bins, moments["min"], moments["max"])
    fine = np.bincount(np.searchsorted(_search_edges(edges), finite, side="right"))
    fine = np.pad(fine, (0, edges.size + 1 - fine.size))[1:-1]
    return {
        "kind": "continuous",
        **base,
        **moments,
        "edges": edges.tolist(),
        "counts": fine.tolist(),
    }


def _quantiles(values: np.ndarray) -> np.ndarray:
    quantiles: np.ndarray = np.quantile(values, list(QUANTILES.values()))  # numpy says Any
    return quantiles


def _quantile_edges(values: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    probs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    # Split the two outer bins further: W1 assumes mass spread evenly inside a bin, and the
    # outer equal-mass bins of a long tail are wide (lognormal: W1 off by 0.17 with 100 bins,
    # 0.02 with these 6 extra edges).
    tails = [p for p in TAIL_QUANTILES if p < 1.0 / bins]
    probs = np.concatenate((tails, probs, [1.0 - p for p in reversed(tails)]))
    inner = np.quantile(values, np.sort(probs))
    # Round inner edges relative to the range so the JSON stays short; min and max stay exact.
    decimals = EDGE_DIGITS - math.floor(math.log10(hi - lo))
    inner = np.clip(np.round(inner, decimals), lo, hi)
    return np.unique(np.concatenate(([lo], inner, [hi])))


def _search_edges(edges: np.ndarray) -> np.ndarray:
    """Edges for ``searchsorted(side="right")``: bins are [e_i, e_i+1) and the last is closed."""
    out = np.array(edges, dtype=float)
    out[-1] = np.nextafter(out[-1], np.inf)
    return out


def _categorical_profile(counts: dict[str, int], missing: int, top: int) -> dict[str, Any]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept, rest = ranked[:top], ranked[top:]
    out = {
        "kind": "categorical",
        **_base(sum(counts.values()), missing),
        "categories": [k for k, _ in kept],
        "counts": [c for _, c in kept],
        "other": sum(c for _, c in rest),
    }
    if rest:  # the rare categories, so that a current value can be told new or rare
        known = LabelFilter.build([k for k, _ in rest]) if len(rest) <= MAX_KNOWN_TAIL else None
        out["tail"] = {"distinct": len(rest), "filter": known.to_dict() if known else None}
    return out


class LabelFilter:
    """A Bloom filter of category labels: ``label in f`` is always true for a label it was built
    from, and true for any other label with probability about :data:`KNOWN_FALSE_POSITIVE`.

    Deterministic (blake2b of the UTF-8 label, double hashing), so a filter stored in a profile
    answers the same on any machine. JSON form: ``{"bits", "hashes", "data"}`` with the bit
    array in base64.
    """

    def __init__(self, bits: int, hashes: int, data: bytes) -> None:
        if not (8 <= bits == 8 * len(data)) or not 1 <= hashes <= 32:
            raise DataError(
                f"drift: category filter of {bits} bits, {hashes} hashes and "
                f"{len(data)} bytes is malformed"
            )
        self.bits = bits
        self.hashes = hashes
        self._data = bytearray(data)

    @classmethod
    def build(cls, labels: Sequence[str], rate: float = KNOWN_FALSE_POSITIVE) -> LabelFilter:
        """The smallest filter (whole bytes) holding ``labels`` at false-positive ``rate``."""
        n = max(1, len(labels))
        # At least 2,048 bits: the sizing formula assumes a large filter (at 10 labels and 144
        # bits, 1% of other labels passed); a small filter costs next to nothing anyway.
        bits = max(2048, math.ceil(-n * math.log(rate) / math.log(2) ** 2))
        bits += -bits % 8
        hashes = min(16, max(1, round(bits / n * math.log(2))))
        out = cls(bits, hashes, bytes(bits // 8))
        for label in labels:
            for pos in out._positions(label):
                out._data[pos >> 3] |= 1 << (pos & 7)
        return out

    def _positions(self, label: str) -> list[int]:
        digest = hashlib.blake2b(label.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1
        return [(h1 + i * h2) % self.bits for i in range(self.hashes)]

    def __contains__(self, label: object) -> bool:
        if not isinstance(label, str):
            return False
        return all(self._data[p >> 3] & (1 << (p & 7)) for p in self._positions(label))

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "hashes": self.hashes,
            "data": base64.b64encode(bytes(self._data)).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LabelFilter:
        try:
            data = base64.b64decode(str(raw["data"]), validate=True)
            return cls(int(raw["bits"]), int(raw["hashes"]), data)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"drift: category filter in the profile is malformed: {exc}") from None


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison. ``stats`` holds every statistic of STATISTICS except
    ``missing_rate`` (None where it does not apply to the kind, or cannot be computed).

    ``new_categories`` (categorical features only, else None): ``share`` of the current values
    the reference never had (None when the profile cannot tell, see ``reference``), their
    ``rows``, the ``top`` few as ``{"value", "rows"}`` (values cut to
    :data:`NEW_CATEGORY_CHARS`), and ``reference``: ``complete`` (the profile lists every
    reference category), ``filter`` (rare ones in a :class:`LabelFilter`: about
    :data:`KNOWN_FALSE_POSITIVE` of distinct new values pass as rare ones) or ``unavailable``
    (a profile written before the filter existed, or an id-like reference column with more than
    :data:`MAX_KNOWN_TAIL` rare values).
    """

    kind: Kind
    drifted: bool
    reasons: tuple[str, ...]
    n_ref: int
    n_cur: int
    missing_ref: float
    missing_cur: float
    stats: Mapping[str, float | None]
    thresholds: Mapping[str, float]
    histogram: Mapping[str, list[Any]]
    new_categories: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        new = self.new_categories
        return {
            "kind": self.kind,
            "drifted": self.drifted,
            "reasons": list(self.reasons),
            "n_ref": self.n_ref,
            "n_cur": self.n_cur,
            "missing_ref": self.missing_ref,
            "missing_cur": self.missing_cur,
            "stats": {k: self.stats[k] for k in _STAT_KEYS},
            "thresholds": dict(self.thresholds),
            "histogram": {k: list(self.histogram[k]) for k in ("labels", "ref", "cur")},
            "new_categories": None
            if new is None
            else {
                "share": new["share"],
                "rows": new["rows"],
                "top": [dict(t) for t in new["top"]],
                "reference": new["reference"],
            },
        }


_STAT_KEYS = ("psi", "js", "wasserstein", "ks", "linf", "cramers_v", "new_category_share")


@dataclass(frozen=True)
class DriftResult:
    """Drift of a batch of rows against a reference profile; :meth:`to_dict` is the JSON form."""

    rows: int
    reference_rows: int
    insufficient: bool
    dataset_drift: bool
    drift_share: float
    drifted: tuple[str, ...]
    dataset_share_threshold: float
    features: Mapping[str, FeatureDrift]
    #: Features whose new-category share reached its threshold (a subset of ``drifted``).
    new_categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RESULT_SCHEMA,
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "insufficient": self.insufficient,
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "drifted": list(self.drifted),
            "new_categories": list(self.new_categories),
            "dataset_share_threshold": self.dataset_share_threshold,
            "features": {name: f.to_dict() for name, f in self.features.items()},
        }


# --------------------------------------------------------------------------------------------
# Statistics


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """Population stability index Σ (q − p) ln(q / p) over buckets, with ``smoothing`` added to
    every bucket's count on both sides (so an empty bucket costs a finite amount)."""
    k = len(ref_counts)
    p = (np.asarray(ref_counts, float) + smoothing) / (np.sum(ref_counts) + smoothing * k)
    q = (np.asarray(cur_counts, float) + smoothing) / (np.sum(cur_counts) + smoothing * k)
    return float(max(0.0, np.sum((q - p) * np.log(q / p))))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance, base 2 (0 = same, 1 = disjoint), on two proportion vectors."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def cramers_v(p: np.ndarray, q: np.ndarray) -> float:
    """Cramér's V of the 2×K table with both samples weighted equally.

    Equal weights make V depend only on the two distributions, not on how many more current rows
    there are than reference rows (with raw counts, V shrinks as the current batch grows).
    V² = ½ Σ (p − q)² / (p + q).
    """
    s = p + q
    nz = s > 0
    return math.sqrt(max(0.0, 0.5 * float(np.sum((p[nz] - q[nz]) ** 2 / s[nz]))))


def _proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def _scale(spec: Mapping[str, Any]) -> float:
    """Reference spread used to normalise W1: std, else IQR/1.349, else 1 (absolute units)."""
    std = float(spec.get("std") or 0.0)
    if std > 0:
        return std
    q = spec.get("quantiles") or {}
    iqr = float(q.get("p75", 0.0)) - float(q.get("p25", 0.0))
    return iqr / 1.349 if iqr > 0 else 1.0


def _group(ref_counts: np.ndarray, groups: int) -> np.ndarray:
    """Group index per fine bin: adjacent bins merged into ≈ equal reference mass."""
    n = len(ref_counts)
    if n <= groups:
        return np.arange(n)
    cum = np.cumsum(ref_counts, dtype=float)
    total = cum[-1]
    if total <= 0:
        return np.minimum(np.arange(n) * groups // n, groups - 1)
    # Boundary after the fine bin whose cumulative share is nearest each k/groups.
    cuts = {int(np.argmin(np.abs(cum / total - k / groups))) for k in range(1, groups)}
    cuts.discard(n - 1)
    boundaries = np.array(sorted(cuts), dtype=int)
    return np.searchsorted(boundaries, np.arange(n), side="left")


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _piecewise_abs_integral(d0: np.ndarray, d1: np.ndarray, width: np.ndarray) -> float:
    """∫ |D| over bins where D is linear from d0 to d1 across each bin of ``width``."""
    a0, a1 = np.abs(d0), np.abs(d1)
    same = d0 * d1 >= 0
    denom = np.where(same, 1.0, a0 + a1)
    crossing = (d0**2 + d1**2) / (2 * denom)
    return float(np.sum(width * np.where(same, 0.5 * (a0 + a1), crossing)))


# --------------------------------------------------------------------------------------------
# Per-feature accumulators


class _State:
    kind: Kind

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        self.name = name
        self.spec = spec
        self.missing = 0
        self.n_ref = int(spec.get("count", 0))
        self.missing_ref = float(spec.get("missing_rate", 0.0))

    def update(self, values: Any) -> None:
        raise NotImplementedError

    @property
    def n_cur(self) -> int:
        raise NotImplementedError

    def compare(self) -> tuple[dict[str, float | None], dict[str, list[Any]]]:
        """(stats, histogram) of the accumulated rows against the reference."""
        raise NotImplementedError

    def new_categories(self) -> dict[str, Any] | None:
        """Values the reference never had (:attr:`FeatureDrift.new_categories`); categorical
        features only."""
        return None

    def state(self) -> dict[str, Any]:
        """The counts so far, JSON-able (:meth:`DriftAccumulator.state`)."""
        return {"kind": self.kind, "missing": self.missing}

    def merge(self, state: Mapping[str, Any]) -> None:
        """Add the counts of another accumulator on the same reference (its :meth:`state`)."""
        if state.get("kind") != self.kind:
            raise DataError(
                f"drift: cannot merge a {state.get('kind')!r} state into {self.name!r} "
                f"({self.kind}): the partial was built on another profile"
            )
        self.missing += int(state["missing"])

    def _merge_counts(self, mine: np.ndarray, theirs: Any) -> None:
        other = np.asarray(theirs, dtype=np.int64)
        if other.shape != mine.shape:
            raise DataError(
                f"drift: {self.name!r}: a partial has {other.size} bins, the reference "
                f"{mine.size}: it was built on another profile"
            )
        mine += other

    def _finite(self, values: Any) -> np.ndarray:
        x = _numeric_array(values, self.name)
        if x.dtype.kind == "f":
            finite = np.isfinite(x)
            kept = int(np.count_nonzero(finite))
            if kept < x.size:  # copy only when something is missing
                self.missing += x.size - kept
                x = x[finite]
        return x


class _ContinuousState(_State):
    kind: Kind = "continuous"

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        super().__init__(name, spec)
        self.edges = np.asarray(spec.get("edges", []), dtype=float)
        self.ref = np.asarray(spec.get("counts", []), dtype=np.int64)
        self.empty = self.edges.size < 2
        if not self.empty:
            self.search = _search_edges(self.edges)
            self.groups = _group(self.ref, COARSE_BINS)
        # counts[0] = below the reference min, counts[-1] = above the reference max.
        self.counts = np.zeros(max(self.edges.size + 1, 1), dtype=np.int64)
        self.below = 0.0  # Σ (min − x) over values below the reference min
        self.above = 0.0  # Σ (x − max) over values above the reference max

    @property
    def n_cur(self) -> int:
        return int(self.counts.sum())

    def update(self, values: Any) -> None:
        x = self._finite(values)
        if x.size == 0:
            return
        if self.empty:
            self.counts[0] += x.size
            return
        binned = np.bincount(np.searchsorted(self.search, x, side="right"))
        self.counts[: binned.size] += binned
        if binned[0]:
            lo = self.edges[0]
            self.below += float(np.sum(lo - x[x < lo]))
        if binned.size == self.counts.size and binned[-1]:
            hi = self.edges[-1]
            self.above += float(np.sum(x[x > hi] - hi))

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "counts": self.counts.tolist(),
            "below": self.below,
            "above": self.above,
        }

    def merge(self, state: Mapping[str, Any]) -> None:
        super().merge(state)
        self._merge_counts(self.counts, state["counts"])
        self.below += float(state["below"])
        self.above += float(state["above"])

    def compare(self) -> tuple[dict[str, float | None], dict[str, list[Any]]]:
        if self.empty or self.n_cur == 0 or self.n_ref == 0:
            return _no_stats(), {"labels": [], "ref": [], "cur": []}
        fine = self.counts[1:-1]
        n_groups = int(self.groups[-1]) + 1
        ref_coarse = np.bincount(self.groups, weights=self.ref, minlength=n_groups)
        cur_coarse = np.bincount(self.groups, weights=fine, minlength=n_groups)
        cur_coarse[0] += self.counts[0]  # outside the reference range: the outer deciles
        cur_coarse[-1] += self.counts[-1]
        p, q = _proportions(ref_coarse), _proportions(cur_coarse)

        # Piecewise-linear CDFs on the fine edges (mass spread evenly inside each fine bin).
        n_cur = self.n_cur
        f_ref = np.concatenate(([0.0], np.cumsum(self.ref) / self.ref.sum()))
        f_cur = (self.counts[0] + np.concatenate(([0], np.cumsum(fine)))) / n_cur
        gap = f_ref - f_cur
        inside = _piecewise_abs_integral(gap[:-1], gap[1:], np.diff(self.edges))
        # Outside [min, max] F_ref is 0 (or 1), so ∫|ΔF| there is exactly the mean excursion.
        w1 = (inside + (self.below + self.above) / n_cur) / _scale(self.spec)
        stats: dict[str, float | None] = {
            "psi": psi(ref_coarse, cur_coarse),
            "js": js_distance(p, q),
            "wasserstein": w1,
            "ks": float(np.max(np.abs(gap))),
            "linf": None,
            "cramers_v": None,
            "new_category_share": None,
        }
        cut = [self.edges[np.flatnonzero(self.groups == g)[0]] for g in range(1, n_groups)]
        bounds = ["-inf", *(_fmt(c) for c in cut), "+inf"]
        labels = [f"{'(' if i == 0 else '['}{bounds[i]}, {bounds[i + 1]})" for i in range(n_groups)]
        return stats, {"labels": labels, "ref": p.tolist(), "cur": q.tolist()}


class _DiscreteState(_State):
    kind: Kind = "discrete"

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        super().__init__(name, spec)
        self.values = np.asarray(spec["values"], dtype=float)
        self.ref = np.asarray(spec["counts"], dtype=np.int64)
        self.counts = np.zeros(self.values.size, dtype=np.int64)
        self.unseen: dict[float, int] = {}
        self.pooled = 0  # unseen values beyond UNSEEN_CAP distinct ones: count and sum
        self.pooled_sum = 0.0
        lo, hi = self.values[0], self.values[-1]
        self.integer = bool(np.all(self.values == np.round(self.values)))
        # Integer input over a small range: one bincount, no search.
        self.offset = int(lo) if self.integer else 0
        self.span = int(hi - lo) + 1 if self.integer and hi - lo < 1 << 16 else 0
        if self.span:
            self.lookup = np.full(self.span, -1, dtype=np.int64)
            self.lookup[(self.values - lo).astype(np.int64)] = np.arange(self.values.size)

    @property
    def n_cur(self) -> int:
        return int(self.counts.sum() + sum(self.unseen.values()) + self.pooled)

    def update(self, values: Any) -> None:
        x = self._finite(values)
        if x.size == 0:
            return
        if self.span and x.dtype.kind in "iu":
            k = x.astype(np.int64, copy=False) - self.offset
            inside = (k >= 0) & (k < self.span)
            binned = np.bincount(k[inside], minlength=self.span)
            known = self.lookup >= 0
            self.counts += binned[known]
            seen = np.flatnonzero(~known & (binned > 0))
            self._add_unseen(seen + self.offset, binned[seen])
            outside = x[~inside]
            if outside.size:
                self._add_unseen(*np.unique(outside, return_counts=True))
            return
        idx = np.searchsorted(self.values, x)
        np.minimum(idx, self.values.size - 1, out=idx)
        match = self.values[idx] == x
        self.counts += np.bincount(idx[match], minlength=self.values.size)
        rest = x[~match]
        if rest.size:
            self._add_unseen(*np.unique(rest, return_counts=True))

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "counts": self.counts.tolist(),
            # In the order first seen: a merge keeps the first UNSEEN_CAP as one pass would.
            "unseen": [[v, c] for v, c in self.unseen.items()],
            "pooled": self.pooled,
            "pooled_sum": self.pooled_sum,
        }

    def merge(self, state: Mapping[str, Any]) -> None:
        super().merge(state)
        self._merge_counts(self.counts, state["counts"])
        pairs = state["unseen"]
        if pairs:
            values, counts = zip(*pairs, strict=True)
            self._add_unseen(np.asarray(values, dtype=float), np.asarray(counts, dtype=np.int64))
        self.pooled += int(state["pooled"])
        self.pooled_sum += float(state["pooled_sum"])

    def _add_unseen(self, values: np.ndarray, counts: np.ndarray) -> None:
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            v = float(v)
            if v in self.unseen or len(self.unseen) < UNSEEN_CAP:
                self.unseen[v] = self.unseen.get(v, 0) + c
            else:
                self.pooled += c
                self.pooled_sum += v * c

    def compare(self) -> tuple[dict[str, float | None], dict[str, list[Any]]]:
        n_unseen = sum(self.unseen.values()) + self.pooled
        if self.n_cur == 0 or self.n_ref == 0:
            return _no_stats(), {"labels": [], "ref": [], "cur": []}
        ref_b = self.ref.astype(float)
        cur_b = self.counts.astype(float)
        if n_unseen:  # values the reference never had: one bucket of their own
            ref_b = np.append(ref_b, 0.0)
            cur_b = np.append(cur_b, float(n_unseen))
        p, q = _proportions(ref_b), _proportions(cur_b)

        # Exact W1 and KS on the union of values (pooled unseen values sit at their mean).
        extra_v = list(self.unseen)
        extra_c = list(self.unseen.values())
        if self.pooled:
            extra_v.append(self.pooled_sum / self.pooled)
            extra_c.append(self.pooled)
        pos = np.concatenate((self.values, np.asarray(extra_v, dtype=float)))
        w_ref = np.concatenate((self.ref, np.zeros(len(extra_v))))
        w_cur = np.concatenate((self.counts, np.asarray(extra_c, dtype=float)))
        order = np.argsort(pos, kind="stable")
        pos, w_ref, w_cur = pos[order], w_ref[order], w_cur[order]
        gap = np.cumsum(w_ref) / w_ref.sum() - np.cumsum(w_cur) / w_cur.sum()
        w1 = float(np.sum(np.abs(gap[:-1]) * np.diff(pos))) / _scale(self.spec)
        stats: dict[str, float | None] = {
            "psi": psi(ref_b, cur_b),
            "js": js_distance(p, q),
            "wasserstein": w1,
            "ks": float(np.max(np.abs(gap))),
            "linf": None,
            "cramers_v": None,
            "new_category_share": None,
        }
        return stats, self._histogram(p, q, bool(n_unseen))

    def _histogram(self, p: np.ndarray, q: np.ndarray, unseen: bool) -> dict[str, list[Any]]:
        k = self.values.size
        shown = [str(int(v)) if self.integer else _fmt(v) for v in self.values]
        slots = HISTOGRAM_BUCKETS - (1 if unseen else 0)
        if k <= slots:
            labels, hp, hq = shown, p[:k], q[:k]
        else:
            groups = _group(self.ref, slots)
            n_groups = int(groups[-1]) + 1
            hp = np.bincount(groups, weights=p[:k], minlength=n_groups)
            hq = np.bincount(groups, weights=q[:k], minlength=n_groups)
            labels = []
            for g in range(n_groups):
                members = np.flatnonzero(groups == g)
                first, last = shown[members[0]], shown[members[-1]]
                labels.append(first if first == last else f"{first}–{last}")
        if unseen:
            labels = [*labels, "(unseen)"]
            hp, hq = np.append(hp, p[-1]), np.append(hq, q[-1])
        return {"labels": list(labels), "ref": hp.tolist(), "cur": hq.tolist()}


class _CategoricalState(_State):
    kind: Kind = "categorical"

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        super().__init__(name, spec)
        # Profiles written before labels were capped may hold long ones: cap them the way
        # current values are capped, or no current value would ever match them.
        merged: dict[str, int] = {}
        for label, count in zip(spec["categories"], spec["counts"], strict=True):
            key = cap_label(str(label))
            merged[key] = merged.get(key, 0) + int(count)
        self.categories: list[str] = list(merged)
        self.index = {c: i for i, c in enumerate(self.categories)}
        self.ref = np.asarray(list(merged.values()), dtype=np.int64)
        self.ref_other = int(spec.get("other", 0))
        self.counts = np.zeros(len(self.categories), dtype=np.int64)
        self.other = 0
        # Categories the top-N list lacks: rare reference ones and new ones alike.
        self.unseen: Counter[str] = Counter()
        # Which of them the reference never had: all of them if the profile lists every
        # reference category, those not in its filter of rare ones if it has one; else unknown.
        self.known: Literal["complete", "filter", "unavailable"] = "unavailable"
        self.filter: LabelFilter | None = None
        tail = spec.get("tail")
        if self.ref_other == 0:
            self.known = "complete"
        elif isinstance(tail, Mapping) and isinstance(tail.get("filter"), Mapping):
            self.known, self.filter = "filter", LabelFilter.from_dict(tail["filter"])
        self.new_rows = 0
        self.new: Counter[str] = Counter()  # the first UNSEEN_CAP distinct new values
        self._verdicts: dict[str, bool] = {}  # new or not, per value in ``new``/``unseen``

    @property
    def n_cur(self) -> int:
        return int(self.counts.sum()) + self.other

    def update(self, values: Any) -> None:
        counts, missing = _category_counts(values, self.name)
        self.missing += missing
        for label, count in counts.items():
            i = self.index.get(label)
            if i is not None:
                self.counts[i] += count
                continue
            self.other += count
            if label in self.unseen or len(self.unseen) < UNSEEN_CAP:
                self.unseen[label] += count
            if self._is_new(label):
                self.new_rows += count
                if label in self.new or len(self.new) < UNSEEN_CAP:
                    self.new[label] += count

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "counts": self.counts.tolist(),
            "other": self.other,
            "unseen": [[k, c] for k, c in self.unseen.items()],  # first seen first
            "new_rows": self.new_rows,
            "new": [[k, c] for k, c in self.new.items()],
        }

    def merge(self, state: Mapping[str, Any]) -> None:
        super().merge(state)
        self._merge_counts(self.counts, state["counts"])
        self.other += int(state["other"])
        self.new_rows += int(state["new_rows"])
        for target, pairs in ((self.unseen, state["unseen"]), (self.new, state["new"])):
            for label, count in pairs:
                if label in target or len(target) < UNSEEN_CAP:
                    target[str(label)] += int(count)

    def _is_new(self, label: str) -> bool:
        if self.known != "filter":
            return self.known == "complete"
        verdict = self._verdicts.get(label)
        if verdict is None:
            verdict = self.filter is not None and label not in self.filter
            if len(self._verdicts) < 2 * UNSEEN_CAP:  # memoised for the values seen first
                self._verdicts[label] = verdict
        return verdict

    def new_share(self) -> float | None:
        if self.known == "unavailable":
            return None
        return self.new_rows / self.n_cur if self.n_cur else 0.0

    def new_categories(self) -> dict[str, Any]:
        unknown = self.known == "unavailable"
        top = sorted(self.new.items(), key=lambda kv: (-kv[1], kv[0]))[:NEW_CATEGORY_TOP]
        return {
            "share": self.new_share(),
            "rows": None if unknown else self.new_rows,
            "top": [{"value": cap_label(v, NEW_CATEGORY_CHARS), "rows": c} for v, c in top],
            "reference": self.known,
        }

    def compare(self) -> tuple[dict[str, float | None], dict[str, list[Any]]]:
        if self.n_cur == 0 or self.n_ref == 0:
            empty = _no_stats(categorical=True)
            empty["new_category_share"] = self.new_share()
            return empty, {"labels": [], "ref": [], "cur": []}
        ref_b, cur_b = self.ref.astype(float), self.counts.astype(float)
        labels = list(self.categories)
        if self.ref_other or self.other:
            ref_b, cur_b = np.append(ref_b, self.ref_other), np.append(cur_b, self.other)
            labels.append("(other)" if self.ref_other else "(new)")
        p, q = _proportions(ref_b), _proportions(cur_b)
        stats: dict[str, float | None] = {
            "psi": psi(ref_b, cur_b),
            "js": js_distance(p, q),
            "wasserstein": None,
            "ks": None,
            "linf": float(np.max(np.abs(p - q))),
            "cramers_v": cramers_v(p, q),
            "new_category_share": self.new_share(),
        }
        if len(labels) > HISTOGRAM_BUCKETS:
            # Keep the categories that matter most on either side; pool the rest.
            k = len(self.categories)
            weight = np.maximum(p[:k], q[:k])
            keep = np.sort(np.argsort(-weight, kind="stable")[: HISTOGRAM_BUCKETS - 1])
            rest = np.ones(p.size, dtype=bool)
            rest[keep] = False
            labels = [*(labels[i] for i in keep), "(other)"]
            p = np.append(p[keep], p[rest].sum())
            q = np.append(q[keep], q[rest].sum())
        return stats, {"labels": labels, "ref": p.tolist(), "cur": q.tolist()}


def _no_stats(*, categorical: bool = False) -> dict[str, float | None]:
    """Nothing to compare (a side has no values): the verdict rests on the missing rate."""
    return {
        "psi": 0.0,
        "js": 0.0,
        "wasserstein": None,
        "ks": None,
        "linf": 0.0 if categorical else None,
        "cramers_v": 0.0 if categorical else None,
        "new_category_share": None,
    }


_STATES: dict[str, Callable[[str, Mapping[str, Any]], _State]] = {
    "continuous": _ContinuousState,
    "discrete": _DiscreteState,
    "categorical": _CategoricalState,
}


# --------------------------------------------------------------------------------------------
# Accumulator


class DriftAccumulator:
    """Counts of current data against a reference profile, fed chunk by chunk.

    Only fixed-size count arrays (plus at most ``UNSEEN_CAP`` unseen values per feature) are
    kept, so memory does not depend on the number of rows. Feeding the rows in one chunk or in
    many gives the same result.
    """

    def __init__(self, profile: Mapping[str, Any], features: Sequence[str] | None = None) -> None:
        if profile.get("schema") != PROFILE_SCHEMA:
            raise DataError(
                f"drift: profile schema {profile.get('schema')!r} is not {PROFILE_SCHEMA}; "
                "rebuild it with warden.ml.drift.build_reference_profile"
            )
        specs: Mapping[str, Any] = profile["features"]
        names = list(specs) if features is None else list(features)
        unknown = [n for n in names if n not in specs]
        if unknown:
            raise DataError(f"drift: features not in the reference profile: {unknown}")
        self.reference_rows = int(profile.get("rows", 0))
        self._states: dict[str, _State] = {}
        for name in names:
            kind = specs[name].get("kind")
            if kind not in _STATES:
                raise DataError(f"drift: feature {name!r} has unknown kind {kind!r} in the profile")
            self._states[name] = _STATES[kind](name, specs[name])
        self._rows = 0

    @property
    def rows(self) -> int:
        """Rows fed so far."""
        return self._rows

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self._states)

    def update(self, chunk: Mapping[str, Any]) -> None:
        """Add a chunk: a mapping of feature name to a 1-D array (or a DataFrame / Table)."""
        columns = {name: _column(chunk, name) for name in self._states}
        lengths = {_length(v) for v in columns.values()}
        if len(lengths) > 1:
            raise DataError(f"drift: chunk columns have different lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        if n == 0:
            return
        work = [(self._states[name], values) for name, values in columns.items()]
        workers = min(_usable_cpus(), len(work))
        if n >= PARALLEL_MIN_ROWS and workers > 1:
            # Binning (searchsorted, bincount, pyarrow hashing) releases the GIL.
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda item: item[0].update(item[1]), work))
        else:
            for state, values in work:
                state.update(values)
        self._rows += n

    def state(self) -> dict[str, Any]:
        """What was fed so far, as JSON-able counts: a shard of a monitor run writes it, and
        :meth:`merge` adds it to another accumulator on the same profile. The counts are
        additive, so accumulators fed disjoint parts of a window and merged in the parts' order
        give the result one accumulator fed the whole window gives (sums of floats up to
        rounding; values beyond ``UNSEEN_CAP`` distinct unseen ones are pooled at their mean
        either way)."""
        return {
            "schema": STATE_SCHEMA,
            "rows": self._rows,
            "features": {name: st.state() for name, st in self._states.items()},
        }

    def merge(self, state: Mapping[str, Any]) -> None:
        """Add another accumulator's :meth:`state` (same profile, same features)."""
        if state.get("schema") != STATE_SCHEMA:
            raise DataError(
                f"drift: accumulator state schema {state.get('schema')!r} is not {STATE_SCHEMA}"
            )
        features = state.get("features") or {}
        if set(features) != set(self._states):
            raise DataError(
                f"drift: a partial covers features {sorted(features)}, this accumulator "
                f"{sorted(self._states)}"
            )
        for name, st in self._states.items():
            st.merge(features[name])
        self._rows += int(state["rows"])

    def result(self, thresholds: DriftThresholds | None = None) -> DriftResult:
        """Compare what was fed so far with the reference."""
        thresholds = thresholds or DriftThresholds()
        insufficient = self._rows < thresholds.min_rows or self.reference_rows < thresholds.min_rows
        features: dict[str, FeatureDrift] = {}
        for name, state in self._states.items():
            features[name] = _judge(name, state, thresholds, self._rows, insufficient)
        drifted = tuple(name for name, f in features.items() if f.drifted)
        share = len(drifted) / len(features) if features else 0.0
        new = tuple(
            name
            for name, f in features.items()
            if any(r.startswith("new_category_share ") for r in f.reasons)
        )
        return DriftResult(
            rows=self._rows,
            reference_rows=self.reference_rows,
            insufficient=insufficient,
            dataset_drift=not insufficient and bool(features) and share >= thresholds.dataset_share,
            drift_share=share,
            drifted=drifted,
            dataset_share_threshold=thresholds.dataset_share,
            features=MappingProxyType(features),
            new_categories=new,
        )


def _judge(
    name: str, state: _State, thresholds: DriftThresholds, rows: int, insufficient: bool
) -> FeatureDrift:
    stats, histogram = state.compare()
    new = state.new_categories()
    limits = thresholds.for_feature(name, state.kind)
    missing_cur = state.missing / rows if rows else 0.0
    reasons: list[str] = []
    if not insufficient:
        change = abs(missing_cur - state.missing_ref)
        limit = limits.get("missing_rate")
        if limit is not None and change >= limit:
            reasons.append(
                f"missing_rate {state.missing_ref:.3f} -> {missing_cur:.3f} "
                f"(change {change:.3f} >= {limit:.3f})"
            )
        # Too few values on a side to judge the distribution: only the missing rate counts.
        if min(state.n_ref, state.n_cur) >= thresholds.min_rows:
            for stat, limit in limits.items():
                value = stats.get(stat)
                if stat != "missing_rate" and value is not None and value >= limit:
                    reason = f"{stat} {value:.3f} >= {limit:.3f}"
                    if stat == "new_category_share" and new and new["top"]:
                        shown = ", ".join(repr(t["value"]) for t in new["top"][:3])
                        reason += f" (new: {shown})"
                    reasons.append(reason)
    return FeatureDrift(
        kind=state.kind,
        drifted=bool(reasons),
        reasons=tuple(reasons),
        n_ref=state.n_ref,
        n_cur=state.n_cur,
        missing_ref=state.missing_ref,
        missing_cur=missing_cur,
        stats=MappingProxyType(stats),
        thresholds=MappingProxyType(limits),
        histogram=MappingProxyType(histogram),
        new_categories=None if new is None else MappingProxyType(new),
    )


def compute_drift(
    profile: Mapping[str, Any],
    columns: Mapping[str, Any],
    thresholds: DriftThresholds | None = None,
    *,
    features: Sequence[str] | None = None,
) -> DriftResult:
    """Drift of ``columns`` (one chunk) against ``profile``."""
    acc = DriftAccumulator(profile, features)
    acc.update(columns)
    return acc.result(thresholds)


class PredictionAccumulator:
    """The model's outputs on served traffic, as counts (fed chunk by chunk, mergeable like
    :class:`DriftAccumulator`): positive-class scores in the reference's bins on [0, 1] for a
    classifier, rows per cluster for clustering. :meth:`result` judges them
    (:func:`prediction_drift`)."""

    def __init__(self, profile: Mapping[str, Any], task: str) -> None:
        self.task = task
        self.reference = profile.get(
            "score_distribution" if task == "classification" else "cluster_distribution"
        )
        bins = len(self.reference["counts"]) if task == "classification" and self.reference else 0
        self.scores = np.zeros(bins, dtype=np.int64)
        self.clusters: Counter[str] = Counter()
        self.rows = 0

    def update(self, values: Any) -> None:
        arr = np.asarray(values, dtype=float)
        arr = arr[~np.isnan(arr)]
        self.rows += len(arr)
        if not self.reference or not len(arr):
            return
        if self.task == "classification":
            counts, _ = np.histogram(np.clip(arr, 0.0, 1.0), bins=self.scores.size, range=(0, 1))
            self.scores += counts
        else:
            labels, counts = np.unique(arr.astype(np.int64), return_counts=True)
            self.clusters.update(dict(zip(map(str, labels.tolist()), counts.tolist(), strict=True)))

    def state(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "scores": self.scores.tolist(),
            "clusters": dict(self.clusters),
        }

    def merge(self, state: Mapping[str, Any]) -> None:
        scores = np.asarray(state["scores"], dtype=np.int64)
        if scores.shape != self.scores.shape:
            raise DataError("drift: a partial's score bins differ from the reference's")
        self.scores += scores
        self.clusters.update({str(k): int(v) for k, v in state["clusters"].items()})
        self.rows += int(state["rows"])

    def result(self, thresholds: DriftThresholds | None = None) -> dict[str, Any]:
        thresholds = thresholds or DriftThresholds()
        out: dict[str, Any] = {"rows": self.rows, "drifted": False}
        ref = self.reference
        if self.task == "classification":
            if not ref:
                return {**out, "detail": "the champion's profile has no score distribution"}
            ref_counts = np.asarray(ref["counts"], dtype=float)
            cur_counts = self.scores.astype(float)
            labels = [f"{a:.1f}-{b:.1f}" for a, b in pairwise(ref["bin_edges"])]
            statistic, threshold = "psi", thresholds.psi
            value = psi(ref_counts, cur_counts)
        else:
            if not ref:
                return {**out, "detail": "the champion's profile has no cluster distribution"}
            labels = sorted({*ref["counts"], *self.clusters}, key=lambda k: (len(k), k))
            ref_counts = np.asarray([ref["counts"].get(k, 0) for k in labels], dtype=float)
            cur_counts = np.asarray([self.clusters.get(k, 0) for k in labels], dtype=float)
            statistic, threshold = "linf", thresholds.linf
            value = float(np.max(np.abs(_proportions(ref_counts) - _proportions(cur_counts))))
        p, q = _proportions(ref_counts), _proportions(cur_counts)
        out.update(
            statistic=statistic,
            value=value,
            threshold=threshold,
            js=js_distance(p, q),
            reference={k: round(float(x), 6) for k, x in zip(labels, p, strict=True)},
            current={k: round(float(x), 6) for k, x in zip(labels, q, strict=True)},
        )
        if self.rows < thresholds.min_rows:
            out["detail"] = (
                f"insufficient data: {self.rows} outputs (min_rows {thresholds.min_rows})"
            )
            return out
        out["drifted"] = threshold is not None and value >= threshold
        return out


def prediction_drift(
    profile: Mapping[str, Any], values: Any, task: str, thresholds: DriftThresholds | None = None
) -> dict[str, Any]:
    """How far the model's outputs on served traffic moved from its outputs on the holdout at
    training time (the reference in ``profile``).

    Classification: the positive-class scores, in the profile's ten equal-width bins on [0, 1]
    (``score_distribution``), judged by PSI (``thresholds.psi``). Clustering: the share of each
    cluster (``cluster_distribution``), judged by the largest change of a share
    (``thresholds.linf``). JS distance is reported for both. Fewer than ``thresholds.min_rows``
    outputs, or a reference the version does not have (trained before it was recorded), give
    ``drifted: False`` with the reason in ``detail``. (:class:`PredictionAccumulator` does the
    same chunk by chunk.)
    """
    acc = PredictionAccumulator(profile, task)
    acc.update(values)
    return acc.result(thresholds)
