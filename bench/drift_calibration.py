"""Calibration of the drift thresholds: false-alarm and detection rates on synthetic data.

    .venv/bin/python bench/drift_calibration.py            # ~5 minutes on 2 cores
    .venv/bin/python bench/drift_calibration.py --quick    # smoke run, seconds

Method. Every seed draws a fresh 10,000-row *reference* (a training-like sample) of 25 columns
from fixed distributions and builds its profile once. Against it go *current* batches of 1,000
and 10,000 rows drawn fresh with the seed's RNG, and of 1,000,000 rows. Same-distribution 1M
batches are row samples (with replacement, per-seed RNG) of a fixed 2M-row population drawn once
from the same distributions: generating 25 fresh 1M-value columns costs more than the drift
computation itself, and the pool's own deviation from the true distributions (~1/√2M) is a tenth
of the reference's sampling noise, so it cannot hide a false alarm. Shifted 1M batches are fresh
draws. The 20 numeric columns are normal, lognormal, uniform, bounded shares (beta), a
zero-inflated amount, integer counts (Poisson, small and large) and a 0/1 flag; 3 of them have
~2% missing values. The 5 categorical columns have 3 to 12 levels with skewed mixes (one has ~1%
missing). Below 1M rows categorical columns are numpy object arrays of strings; at 1M rows they
are pyarrow dictionary arrays (what a Parquet read gives).

Shifts, applied to every column of the kind at once (columns are independent, so this measures
each feature's detection rate in one pass):

- mean: continuous x → x + 0.2 sd; shares → a beta whose mean is 0.2 sd higher (same
  concentration); counts Poisson(λ) → Poisson(λ + 0.2 √λ); flag p → p + 0.2 sd.
- scale: continuous x → mean + 1.2 (x − mean); shares → a beta with the same mean and 1.2× the
  sd; counts → negative binomial with the same mean and 1.2× the sd. (Not defined for the flag.)
- mix: in each categorical column 10 points of share move from the most frequent level to the
  second most frequent.

Prints tables and, last, one JSON line with every number (``docs/drift.md`` quotes them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))

from warden.ml.drift import DriftThresholds, build_reference_profile, compute_drift  # noqa: E402

REF_ROWS = 10_000
POOL_ROWS = 2_000_000
Sampler = Callable[[np.random.Generator, int, str], np.ndarray]


@dataclass(frozen=True)
class Column:
    name: str
    family: str
    sample: Sampler
    modes: frozenset[str]  # shifts defined for this column
    missing: float = 0.0


def affine(draw: Callable[[np.random.Generator, int], np.ndarray], mu: float, sd: float) -> Sampler:
    """Continuous column: the same draw, shifted by 0.2 sd or stretched 1.2× about the mean."""

    def sample(rng: np.random.Generator, n: int, mode: str) -> np.ndarray:
        x = draw(rng, n)
        if mode == "mean":
            return x + 0.2 * sd
        if mode == "scale":
            return mu + 1.2 * (x - mu)
        return x

    return sample


def normal(mu: float, sd: float) -> Sampler:
    return affine(lambda r, n: r.normal(mu, sd, n), mu, sd)


def lognormal(m: float, s: float) -> Sampler:
    mean = math.exp(m + s * s / 2)
    sd = mean * math.sqrt(math.exp(s * s) - 1)
    return affine(lambda r, n: r.lognormal(m, s, n), mean, sd)


def uniform(a: float, b: float) -> Sampler:
    return affine(lambda r, n: r.uniform(a, b, n), (a + b) / 2, (b - a) / math.sqrt(12))


def zero_inflated(zero: float, m: float, s: float) -> Sampler:
    pos = 1 - zero
    mean = pos * math.exp(m + s * s / 2)
    sd = math.sqrt(pos * math.exp(2 * m + 2 * s * s) - mean**2)

    def draw(r: np.random.Generator, n: int) -> np.ndarray:
        return np.where(r.random(n) < zero, 0.0, r.lognormal(m, s, n))

    return affine(draw, mean, sd)


def share(a: float, b: float) -> Sampler:
    """Bounded share in [0, 1]: a beta whose mean or spread is changed, staying in [0, 1]."""
    k = a + b
    mean = a / k
    sd = math.sqrt(mean * (1 - mean) / (k + 1))

    def sample(rng: np.random.Generator, n: int, mode: str) -> np.ndarray:
        m, kk = mean, k
        if mode == "mean":
            m = mean + 0.2 * sd
        elif mode == "scale":
            kk = (k + 1) / 1.44 - 1
        return rng.beta(m * kk, (1 - m) * kk, n)

    return sample


def counts(lam: float) -> Sampler:
    def sample(rng: np.random.Generator, n: int, mode: str) -> np.ndarray:
        if mode == "mean":
            return rng.poisson(lam + 0.2 * math.sqrt(lam), n)
        if mode == "scale":  # NB(r, p): mean r(1-p)/p = lam, variance/mean = 1/p = 1.44
            p = 1 / 1.44
            return rng.negative_binomial(lam * p / (1 - p), p, n)
        return rng.poisson(lam, n)

    return sample


def flag(p: float) -> Sampler:
    def sample(rng: np.random.Generator, n: int, mode: str) -> np.ndarray:
        q = p + 0.2 * math.sqrt(p * (1 - p)) if mode == "mean" else p
        return (rng.random(n) < q).astype(np.int64)

    return sample


CONT = frozenset({"mean", "scale"})
NUMERIC = [
    Column("age_normal", "normal", normal(40, 12), CONT),
    Column("score_normal", "normal", normal(0, 1), CONT, missing=0.02),
    Column("temp_normal", "normal", normal(-5, 0.3), CONT),
    Column("balance_normal", "normal", normal(1e6, 2e5), CONT),
    Column("income_lognormal", "lognormal", lognormal(10, 0.5), CONT),
    Column("spend_lognormal", "lognormal", lognormal(3, 1.0), CONT, missing=0.02),
    Column("latency_lognormal", "lognormal", lognormal(0, 0.75), CONT),
    Column("hour_uniform", "uniform", uniform(0, 24), CONT),
    Column("u_uniform", "uniform", uniform(-1, 1), CONT),
    Column("id_uniform", "uniform", uniform(1e3, 5e3), CONT),
    Column("ctr_share", "share", share(2, 5), CONT),
    Column("util_share", "share", share(5, 2), CONT),
    Column("mix_share", "share", share(0.8, 0.8), CONT, missing=0.02),
    Column("amount_zero_inflated", "zero-inflated", zero_inflated(0.3, 3, 1), CONT),
    Column("visits_poisson", "counts", counts(0.7), CONT),
    Column("items_poisson", "counts", counts(3), CONT),
    Column("calls_poisson", "counts", counts(8), CONT),
    Column("days_poisson", "counts", counts(20), CONT),
    Column("steps_poisson", "counts", counts(300), CONT),  # >50 distinct: binned, continuous
    Column("churned_flag", "flag", flag(0.3), frozenset({"mean"})),
]
CATEGORICAL = {
    "plan": (np.array([0.5, 0.3, 0.2]), 0.0),
    "region": (np.array([0.35, 0.25, 0.2, 0.12, 0.08]), 0.0),
    "device": (np.array([0.4, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03]), 0.01),
    "channel": (np.geomspace(1, 0.1, 10) / np.geomspace(1, 0.1, 10).sum(), 0.0),
    "country": (np.geomspace(1, 0.03, 12) / np.geomspace(1, 0.03, 12).sum(), 0.0),
}
NAMES = [c.name for c in NUMERIC] + list(CATEGORICAL)


def categorical_codes(rng: np.random.Generator, n: int, name: str, mode: str) -> np.ndarray:
    """Level codes of one categorical column; -1 marks a missing value."""
    probs, missing = CATEGORICAL[name]
    if mode == "mix":  # 10 points from the largest level to the second largest
        probs = probs.copy()
        probs[0] -= 0.10
        probs[1] += 0.10
    codes = np.searchsorted(np.cumsum(probs), rng.random(n) * probs.sum(), side="right")
    codes = np.minimum(codes, probs.size - 1).astype(np.int32)
    if missing:
        codes[rng.random(n) < missing] = -1
    return codes


def labels(name: str, codes: np.ndarray, arrow: bool) -> np.ndarray | pa.Array:
    """Codes as the data arrives: a pyarrow dictionary array, or numpy strings with None."""
    levels = [f"{name}_{i}" for i in range(CATEGORICAL[name][0].size)]
    gone = codes < 0
    if arrow:
        indices = pa.array(np.maximum(codes, 0), mask=gone if gone.any() else None)
        return pa.DictionaryArray.from_arrays(indices, pa.array(levels))
    out = np.array([*levels, None], dtype=object)[codes]  # code -1 picks the None
    return out


def numeric_column(rng: np.random.Generator, c: Column, n: int, mode: str) -> np.ndarray:
    x = c.sample(rng, n, mode if mode in c.modes else "null")
    if c.missing:
        x = x.astype(float)
        x[rng.random(n) < c.missing] = np.nan
    return x


def generate(rng: np.random.Generator, n: int, mode: str = "null") -> dict[str, Any]:
    """A fresh draw of n rows."""
    cols: dict[str, Any] = {c.name: numeric_column(rng, c, n, mode) for c in NUMERIC}
    for name in CATEGORICAL:
        cols[name] = labels(name, categorical_codes(rng, n, name, mode), arrow=n >= 1_000_000)
    return cols


class Population:
    """POOL_ROWS rows drawn once from the unshifted distributions; 1M-row same-distribution
    batches are row samples (with replacement) of it. That costs one index draw and a gather
    instead of 25 fresh 1M-value draws; the pool's own deviation from the true distributions
    (~1/√2M) is a tenth of the 10k reference's sampling noise, so it cannot hide a false alarm.
    """

    def __init__(self, rows: int) -> None:
        rng = np.random.default_rng([2026, 0xD21F7])
        self.rows = rows
        self.numeric = {c.name: numeric_column(rng, c, rows, "null") for c in NUMERIC}
        self.codes = {name: categorical_codes(rng, rows, name, "null") for name in CATEGORICAL}

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        idx = rng.integers(0, self.rows, n)
        cols: dict[str, Any] = {name: x[idx] for name, x in self.numeric.items()}
        for name, codes in self.codes.items():
            cols[name] = labels(name, codes[idx], arrow=True)
        return cols


def targeted(mode: str) -> list[str]:
    if mode == "mix":
        return list(CATEGORICAL)
    return [c.name for c in NUMERIC if mode in c.modes]


@dataclass
class Tally:
    """Outcomes of one scenario (a batch size and a shift) over seeds."""

    runs: int = 0
    dataset: int = 0
    any_feature: int = 0

    def __post_init__(self) -> None:
        self.flags: dict[str, int] = dict.fromkeys(NAMES, 0)
        self.stats: dict[str, dict[str, list[float]]] = {n: {} for n in NAMES}
        self.seconds: list[float] = []

    def add(self, result: dict[str, Any], seconds: float) -> None:
        self.runs += 1
        self.dataset += result["dataset_drift"]
        self.any_feature += bool(result["drifted"])
        self.seconds.append(seconds)
        for name, f in result["features"].items():
            self.flags[name] += f["drifted"]
            change = f["missing_cur"] - f["missing_ref"]
            self.stats[name].setdefault("missing_change", []).append(change)
            for stat, value in f["stats"].items():
                if value is not None:
                    self.stats[name].setdefault(stat, []).append(value)

    def rate(self, names: list[str]) -> float:
        return sum(self.flags[n] for n in names) / (self.runs * len(names))

    def worst(self, names: list[str], fn: Callable[..., Any] = max) -> float:
        return fn(self.flags[n] / self.runs for n in names)

    def top(self, names: list[str], stat: str) -> float:
        values = [v for n in names for v in self.stats[n].get(stat, [])]
        return max(values) if values else float("nan")

    def quantile(self, names: list[str], stat: str, q: float) -> float:
        values = [v for n in names for v in self.stats[n].get(stat, [])]
        return float(np.quantile(values, q)) if values else float("nan")


def upper95(events: int, runs: int) -> float:
    """One-sided 95% upper bound of a rate (exact binomial; 3/n when nothing happened)."""
    if events >= runs:
        return 1.0
    lo, hi = events / runs, 1.0
    for _ in range(60):  # bisection on P(X <= events | p) = 0.05
        mid = (lo + hi) / 2
        cdf = sum(math.comb(runs, k) * mid**k * (1 - mid) ** (runs - k) for k in range(events + 1))
        lo, hi = (mid, hi) if cdf > 0.05 else (lo, mid)
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300, help="same-distribution seeds, 1k/10k")
    parser.add_argument("--seeds-1m", type=int, default=300, help="same-distribution seeds, 1M")
    parser.add_argument("--detect", type=int, default=200, help="seeds per shift at 10k")
    parser.add_argument("--detect-1m", type=int, default=20, help="seeds per shift at 1M")
    parser.add_argument("--quick", action="store_true", help="a few seeds, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.seeds_1m, args.detect, args.detect_1m = 20, 3, 10, 2

    th = DriftThresholds()
    numeric, cats = [c.name for c in NUMERIC], list(CATEGORICAL)
    tallies: dict[tuple[str, int], Tally] = {}
    started = time.perf_counter()
    population = Population(POOL_ROWS) if args.seeds_1m else None
    profile_bytes = 0
    for seed in range(max(args.seeds, args.seeds_1m, args.detect, args.detect_1m)):
        rng = np.random.default_rng([2026, seed])
        reference = generate(rng, REF_ROWS)
        profile = build_reference_profile(reference, numeric=numeric, categorical=cats)
        profile_bytes = len(json.dumps(profile))
        plan = [
            ("null", 1_000, args.seeds),
            ("null", 10_000, args.seeds),
            ("null", 1_000_000, args.seeds_1m),
        ]
        plan += [(m, 10_000, args.detect) for m in ("mean", "scale", "mix")]
        plan += [(m, 1_000_000, args.detect_1m) for m in ("mean", "scale", "mix")]
        for mode, rows, seeds in plan:
            if seed >= seeds:
                continue
            if mode == "null" and rows == 1_000_000 and population is not None:
                current = population.sample(rng, rows)
            else:
                current = generate(rng, rows, mode)
            t = time.perf_counter()
            result = compute_drift(profile, current, th).to_dict()
            tallies.setdefault((mode, rows), Tally()).add(result, time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    timing = time_compute(profile, runs=2 if args.quick else 5)
    report(tallies, th, numeric, cats, profile_bytes, elapsed, timing)


def time_compute(profile: dict[str, Any], runs: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of compute_drift on 1M rows × 25 columns (data in memory)."""
    rng = np.random.default_rng([2026, 10**6])
    arrow = generate(rng, 1_000_000)
    objects = dict(arrow)
    for name in CATEGORICAL:
        objects[name] = np.asarray(arrow[name].to_pylist(), dtype=object)  # strings and None
    out = {}
    for label, data in (("dictionary_categoricals", arrow), ("object_categoricals", objects)):
        wall, cpu = [], []
        for _ in range(runs):
            t, c = time.perf_counter(), time.process_time()
            compute_drift(profile, data)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        out[label] = {"wall_s": float(np.median(wall)), "cpu_s": float(np.median(cpu))}
    return out


def report(
    tallies: dict[tuple[str, int], Tally],
    th: DriftThresholds,
    numeric: list[str],
    cats: list[str],
    profile_bytes: int,
    elapsed: float,
    timing: dict[str, dict[str, float]],
) -> None:
    out: dict[str, Any] = {
        "reference_rows": REF_ROWS,
        "thresholds": {
            k: getattr(th, k)
            for k in ("psi", "js", "wasserstein", "ks", "linf", "cramers_v", "missing_rate")
        }
        | {"dataset_share": th.dataset_share, "min_rows": th.min_rows},
        "profile_bytes": profile_bytes,
        "null": {},
        "detect": {},
    }
    print(f"reference {REF_ROWS} rows; profile {profile_bytes / 1024:.1f} KB; {elapsed:.0f} s\n")
    print("Same distribution (false alarms)")
    head = (
        f"{'rows':>9} {'seeds':>5} {'per-feature':>11} {'worst feat':>10} {'any feat':>8} "
        f"{'dataset':>7} {'dataset ≤95%':>12} {'max W1':>7} {'max PSI':>7} {'max L∞':>7} "
        f"{'max Δmiss':>9} {'s/run':>6}"
    )
    print(head)
    for (mode, rows), t in sorted(tallies.items(), key=lambda kv: kv[0][1]):
        if mode != "null":
            continue
        miss = max(
            (abs(a) for n in NAMES for a in _missing_changes(t, n)),
            default=0.0,
        )
        row = {
            "seeds": t.runs,
            "per_feature_rate": t.rate(NAMES),
            "worst_feature_rate": t.worst(NAMES),
            "any_feature_rate": t.any_feature / t.runs,
            "dataset_rate": t.dataset / t.runs,
            "dataset_rate_upper95": upper95(t.dataset, t.runs),
            "max_wasserstein": t.top(numeric, "wasserstein"),
            "max_psi": t.top(NAMES, "psi"),
            "max_linf": t.top(cats, "linf"),
            "max_js": t.top(NAMES, "js"),
            "max_missing_change": miss,
            "seconds_per_run": float(np.median(t.seconds)),
        }
        out["null"][str(rows)] = row
        print(
            f"{rows:>9} {t.runs:>5} {row['per_feature_rate']:>11.2%} "
            f"{row['worst_feature_rate']:>10.2%} {row['any_feature_rate']:>8.2%} "
            f"{row['dataset_rate']:>7.2%} {row['dataset_rate_upper95']:>12.2%} "
            f"{row['max_wasserstein']:>7.3f} {row['max_psi']:>7.3f} {row['max_linf']:>7.3f} "
            f"{miss:>9.3f} {row['seconds_per_run']:>6.2f}"
        )

    print("\nShifted (detections, per targeted feature)")
    print(
        f"{'shift':>6} {'rows':>9} {'seeds':>5} {'per-feature':>11} {'weakest':>8} "
        f"{'statistic':>12} {'median':>6} {'min':>6} {'dataset':>7}"
    )
    key_stat = {"mean": "wasserstein", "scale": "wasserstein", "mix": "linf"}
    for (mode, rows), t in sorted(tallies.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if mode == "null":
            continue
        names = targeted(mode)
        weakest = min(names, key=lambda n: t.flags[n])
        stat = key_stat[mode]
        row = {
            "seeds": t.runs,
            "per_feature_rate": t.rate(names),
            "weakest_feature": weakest,
            "weakest_rate": t.flags[weakest] / t.runs,
            "statistic": stat,
            "median": t.quantile(names, stat, 0.5),
            "min": t.quantile(names, stat, 0.0),
            "dataset_rate": t.dataset / t.runs,
        }
        out["detect"].setdefault(mode, {})[str(rows)] = row
        print(
            f"{mode:>6} {rows:>9} {t.runs:>5} {row['per_feature_rate']:>11.2%} "
            f"{row['weakest_rate']:>8.2%} {stat:>12} {row['median']:>6.3f} {row['min']:>6.3f} "
            f"{row['dataset_rate']:>7.2%}"
        )

    print("\nPer feature: false-alarm rate (null) and detection rate, 10k | 1M")
    print(
        f"{'feature':>22} {'kind':>13} {'FA':>15} {'mean':>15} {'scale':>15} {'mix':>15} "
        f"{'null max W1/L∞':>15}"
    )
    kinds = {c.name: c.family for c in NUMERIC} | dict.fromkeys(CATEGORICAL, "categorical")
    for name in NAMES:
        cells = []
        for mode in ("null", "mean", "scale", "mix"):
            pair = []
            for rows in (10_000, 1_000_000):
                t = tallies.get((mode, rows))
                applies = mode == "null" or name in targeted(mode)
                pair.append(f"{t.flags[name] / t.runs:6.1%}" if t and applies else "     —")
            cells.append(" | ".join(pair))
        stat = "linf" if name in CATEGORICAL else "wasserstein"
        tops = [tallies[("null", rows)].top([name], stat) for rows in (10_000, 1_000_000)]
        cells.append(f"{tops[0]:6.3f} | {tops[1]:6.3f}")
        print(f"{name:>22} {kinds[name]:>13} " + " ".join(f"{c:>15}" for c in cells))
    print("\ncompute_drift, 1M rows × 25 columns (median wall / CPU seconds, both cores)")
    for label, t in timing.items():
        print(f"{label:>24} {t['wall_s']:.2f} s wall {t['cpu_s']:.2f} s CPU")
    out["timing_1m_x25"] = timing
    out["seconds"] = round(elapsed, 1)
    print(json.dumps(out, sort_keys=True))


def _missing_changes(t: Tally, name: str) -> list[float]:
    return t.stats[name].get("missing_change", [])


if __name__ == "__main__":
    main()
