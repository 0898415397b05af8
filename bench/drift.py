"""Benchmark: our drift computation against Evidently's data-drift report, on the same data.

    make bench-drift                                   # creates bench/.venv-drift, then runs this
    .venv/bin/python bench/drift.py [--quick]          # --quick: 100k-row cases only

Cases: one 100k-row reference; current batches of 100k and 1M rows, each drawn from the same
distributions ("none") and with injected shift ("shift": +0.5 sd mean on 5 numeric columns,
×1.3 scale on 3, 15 points of category mix moved on 2 categorical). 20 numeric + 5 categorical
columns, written once per case to Parquet in a temp dir.

Each side runs in its own subprocess, so its peak RSS (VmHWM) is its own, reported over its
baseline (interpreter plus imports, read before any data is loaded):

- profile (our venv): build the reference profile once (a training-time cost) and store it;
- warden (our venv): stream the current Parquet file row group by row group into a
  DriftAccumulator (first, so its peak shows the streaming footprint), then compute on the whole
  batch held in memory; median of 3 after a warm-up;
- evidently (bench/.venv-drift, pandas<3): read both files with pandas, then time
  ``Report([DataDriftPreset()]).run`` (Evidently's default per-column test selection); 2 runs at
  100k, 1 at 1M, after an untimed warm-up on a 2k-row slice.

Prints a table, the columns where the verdicts differ, and last one JSON line for the 1M-row
shifted case (other cases under "cases"). Asserts nothing; not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
EVIDENTLY_PYTHON = ROOT / "bench" / ".venv-drift" / "bin" / "python"
REF_ROWS = 100_000
ROW_GROUP = 100_000
Sampler = Callable[[np.random.Generator, int, bool], np.ndarray]
Family = Callable[[str], Sampler]  # shift kind -> sampler


# --------------------------------------------------------------------------------------------
# Data: the column families of bench/drift_calibration.py, with this benchmark's shifts


@dataclass(frozen=True)
class Column:
    name: str
    sample: Sampler  # (rng, n, shifted) -> values
    shift: str = ""  # "mean" | "scale" | "" (what the shifted case does to it)
    missing: float = 0.0


def continuous(
    draw: Callable[[np.random.Generator, int], np.ndarray], mu: float, sd: float
) -> Family:
    def factory(shift: str) -> Sampler:
        def sample(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
            x = draw(rng, n)
            if shifted and shift == "mean":
                return x + 0.5 * sd
            if shifted and shift == "scale":
                return mu + 1.3 * (x - mu)
            return x

        return sample

    return factory


def normal(mu: float, sd: float) -> Family:
    return continuous(lambda r, n: r.normal(mu, sd, n), mu, sd)


def lognormal(m: float, s: float) -> Family:
    mean = math.exp(m + s * s / 2)
    return continuous(
        lambda r, n: r.lognormal(m, s, n), mean, mean * math.sqrt(math.exp(s * s) - 1)
    )


def uniform(a: float, b: float) -> Family:
    return continuous(lambda r, n: r.uniform(a, b, n), (a + b) / 2, (b - a) / math.sqrt(12))


def zero_inflated(zero: float, m: float, s: float) -> Family:
    pos = 1 - zero
    mean = pos * math.exp(m + s * s / 2)
    sd = math.sqrt(pos * math.exp(2 * m + 2 * s * s) - mean**2)
    return continuous(
        lambda r, n: np.where(r.random(n) < zero, 0.0, r.lognormal(m, s, n)), mean, sd
    )


def share(a: float, b: float) -> Family:
    """A beta share; its mean shift keeps the values in [0, 1] (a real share cannot leave it)."""
    k, mean = a + b, a / (a + b)
    sd = math.sqrt(mean * (1 - mean) / (k + 1))

    def factory(shift: str) -> Sampler:
        def sample(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
            m = mean + 0.5 * sd if shifted and shift == "mean" else mean
            return rng.beta(m * k, (1 - m) * k, n)

        return sample

    return factory


def counts(lam: float) -> Family:
    def factory(shift: str) -> Sampler:
        def sample(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
            return rng.poisson(
                lam + 0.5 * math.sqrt(lam) if shifted and shift == "mean" else lam, n
            )

        return sample

    return factory


def flag(p: float) -> Family:
    def factory(shift: str) -> Sampler:
        return lambda rng, n, shifted: (rng.random(n) < p).astype(np.int64)

    return factory


def col(name: str, family: Family, shift: str = "", missing: float = 0.0) -> Column:
    return Column(name, family(shift), shift, missing)


NUMERIC = [
    col("age_normal", normal(40, 12), "mean"),
    col("score_normal", normal(0, 1), "scale", missing=0.02),
    col("temp_normal", normal(-5, 0.3)),
    col("balance_normal", normal(1e6, 2e5)),
    col("income_lognormal", lognormal(10, 0.5), "mean"),
    col("spend_lognormal", lognormal(3, 1.0), missing=0.02),
    col("latency_lognormal", lognormal(0, 0.75), "scale"),
    col("hour_uniform", uniform(0, 24), "mean"),
    col("u_uniform", uniform(-1, 1), "scale"),
    col("id_uniform", uniform(1e3, 5e3)),
    col("ctr_share", share(2, 5), "mean"),
    col("util_share", share(5, 2)),
    col("mix_share", share(0.8, 0.8), missing=0.02),
    col("amount_zero_inflated", zero_inflated(0.3, 3, 1)),
    col("visits_poisson", counts(0.7)),
    col("items_poisson", counts(3)),
    col("calls_poisson", counts(8), "mean"),
    col("days_poisson", counts(20)),
    col("steps_poisson", counts(300)),
    col("churned_flag", flag(0.3)),
]
CATEGORICAL: dict[str, tuple[list[float], float, bool]] = {  # probs, missing, mix shifted
    "plan": ([0.5, 0.3, 0.2], 0.0, True),
    "region": ([0.35, 0.25, 0.2, 0.12, 0.08], 0.0, True),
    "device": ([0.4, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03], 0.01, False),
    "channel": ((np.geomspace(1, 0.1, 10) / np.geomspace(1, 0.1, 10).sum()).tolist(), 0, False),
    "country": ((np.geomspace(1, 0.03, 12) / np.geomspace(1, 0.03, 12).sum()).tolist(), 0, False),
}
NUMERIC_NAMES = [c.name for c in NUMERIC]
CATEGORICAL_NAMES = list(CATEGORICAL)
NAMES = NUMERIC_NAMES + CATEGORICAL_NAMES


def categorical(rng: np.random.Generator, n: int, name: str, shifted: bool) -> pa.Array:
    raw, missing, mix = CATEGORICAL[name]
    probs = np.array(raw)
    if shifted and mix:  # 15 points from the largest level to the second largest
        probs[0] -= 0.15
        probs[1] += 0.15
    codes = np.minimum(np.searchsorted(np.cumsum(probs), rng.random(n), side="right"), len(raw) - 1)
    gone = rng.random(n) < missing if missing else None
    levels = pa.array([f"{name}_{i}" for i in range(len(raw))])
    # Plain strings in the file (what most writers produce); readers choose how to decode them.
    indices = pa.array(codes.astype(np.int32), mask=gone)
    return pa.DictionaryArray.from_arrays(indices, levels).dictionary_decode()


def generate(rng: np.random.Generator, n: int, shifted: bool) -> pa.Table:
    arrays: dict[str, pa.Array] = {}
    for c in NUMERIC:
        x = c.sample(rng, n, shifted)
        if c.missing:
            x = x.astype(float)
            x[rng.random(n) < c.missing] = np.nan
        arrays[c.name] = pa.array(x, from_pandas=True)  # NaN -> Parquet null
    for name in CATEGORICAL:
        arrays[name] = categorical(rng, n, name, shifted)
    return pa.table(arrays)


# --------------------------------------------------------------------------------------------
# Memory


def hwm_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# --------------------------------------------------------------------------------------------
# Sides (each runs in its own subprocess and prints one JSON line)


def timed(
    fn: Callable[[], Any], runs: int, warm: bool = True
) -> tuple[list[float], list[float], Any]:
    """Wall and CPU seconds of each run, and the last result. CPU time (all threads) shows when
    a busy machine, not the work, made a wall time long."""
    if warm:
        fn()
    wall, cpu, out = [], [], None
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu, out


def side_profile(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "shared"))
    from warden.ml.drift import build_reference_profile

    base = hwm_mb()
    reference = pq.read_table(args.reference, read_dictionary=CATEGORICAL_NAMES)
    columns = {n: reference[n].combine_chunks() for n in NAMES}
    times, _, profile = timed(
        lambda: build_reference_profile(
            columns, numeric=NUMERIC_NAMES, categorical=CATEGORICAL_NAMES
        ),
        runs=3,
    )
    text = json.dumps(profile)
    Path(args.out).write_text(text)
    return {
        "profile_s": statistics.median(times),
        "profile_runs": times,
        "profile_kb": len(text) / 1024,
        "base_mb": base,
        "peak_mb": hwm_mb() - base,
    }


def side_warden(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "shared"))
    from warden.ml.drift import DriftAccumulator, DriftThresholds, compute_drift

    thresholds = DriftThresholds()
    base = hwm_mb()
    # Against the stored profile, as the monitor job does: no reference data in this process.
    profile = json.loads(Path(args.profile).read_text())

    def stream() -> Any:
        source = pq.ParquetFile(args.current, read_dictionary=CATEGORICAL_NAMES)
        acc = DriftAccumulator(profile)
        for i in range(source.num_row_groups):
            acc.update(source.read_row_group(i, columns=NAMES))
        return acc.result(thresholds).to_dict()

    stream_times, stream_cpu, _ = timed(stream, runs=3)
    stream_peak = hwm_mb() - base  # before anything holds the whole batch

    table = pq.read_table(args.current, read_dictionary=CATEGORICAL_NAMES)
    # In memory as a columnar reader gives it: numpy numbers, dictionary-encoded categories.
    columns: dict[str, Any] = {n: table[n].to_numpy() for n in NUMERIC_NAMES}
    columns |= {n: table[n].combine_chunks() for n in CATEGORICAL_NAMES}
    del table
    data_mb = hwm_mb() - base
    times, cpu, result = timed(
        lambda: compute_drift(profile, columns, thresholds).to_dict(), runs=3
    )
    peak = hwm_mb() - base

    # Categories as numpy object arrays (what a pandas frame's to_numpy() hands the monitor).
    for n in CATEGORICAL_NAMES:
        columns[n] = np.asarray(columns[n].to_pylist(), dtype=object)
    object_times, _, _ = timed(lambda: compute_drift(profile, columns, thresholds), runs=3)

    features = result["features"]
    return {
        "rows": result["rows"],
        "compute_s": statistics.median(times),
        "compute_runs": times,
        "compute_cpu_s": statistics.median(cpu),
        "compute_object_s": statistics.median(object_times),
        "stream_s": statistics.median(stream_times),
        "stream_runs": stream_times,
        "stream_cpu_s": statistics.median(stream_cpu),
        "row_groups": pq.ParquetFile(args.current).num_row_groups,
        "drifted": {n: f["drifted"] for n, f in features.items()},
        "why": {n: "; ".join(f["reasons"]) for n, f in features.items()},
        "stats": {
            n: {k: v for k, v in f["stats"].items() if v is not None} for n, f in features.items()
        },
        "dataset_drift": result["dataset_drift"],
        "base_mb": base,
        "stream_peak_mb": stream_peak,
        "data_mb": data_mb,
        "peak_mb": peak,
    }


def side_evidently(args: argparse.Namespace) -> dict[str, Any]:
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    base = hwm_mb()
    t = time.perf_counter()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    read_s = time.perf_counter() - t
    data_mb = hwm_mb() - base
    # Kinds stated, not inferred: both sides judge the same columns as numeric or categorical.
    definition = DataDefinition(
        numerical_columns=NUMERIC_NAMES, categorical_columns=CATEGORICAL_NAMES
    )

    def run(cur: pd.DataFrame, ref: pd.DataFrame) -> Any:
        # include_tests: per-column pass/fail is Evidently's own drift_detected verdict.
        return Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )

    run(current.head(2000), reference.head(2000))  # lazy imports and registries, untimed
    times, cpu, snapshot = timed(lambda: run(current, reference), runs=args.runs, warm=False)
    peak = hwm_mb() - base

    report = snapshot.dict()
    drifted: dict[str, bool] = {}
    for test in report["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type") == "evidently:metric_v2:ValueDrift":
            drifted[params["column"]] = test["status"] == "FAIL"
    method, score = {}, {}
    for metric in report["metrics"]:
        config = metric["config"]
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            method[config["column"]] = f"{config['method']} ≥ {config['threshold']:g}"
            score[config["column"]] = metric["value"]
    missing = set(NAMES) - set(drifted)
    if missing:
        raise SystemExit(f"evidently: no drift verdict for {sorted(missing)}")
    return {
        "version": evidently.__version__,
        "pandas": pd.__version__,
        "read_s": read_s,
        "run_s": statistics.median(times),
        "runs": times,
        "run_cpu_s": statistics.median(cpu),
        "drifted": drifted,
        "method": method,
        "score": score,
        "base_mb": base,
        "data_mb": data_mb,
        "peak_mb": peak,
    }


# --------------------------------------------------------------------------------------------
# Parent


def call(python: Path | str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), __file__, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{Path(python)} {' '.join(args[:2])} failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def agreement(ours: dict[str, bool], theirs: dict[str, bool]) -> float:
    return sum(ours[n] == theirs[n] for n in NAMES) / len(NAMES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k-row cases only")
    parser.add_argument("--evidently-python", default=str(EVIDENTLY_PYTHON))
    parser.add_argument(
        "--side", choices=("profile", "warden", "evidently"), help=argparse.SUPPRESS
    )
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--current", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        sides = {"profile": side_profile, "warden": side_warden, "evidently": side_evidently}
        print(json.dumps(sides[args.side](args)))
        return

    if not Path(args.evidently_python).exists():
        raise SystemExit(f"{args.evidently_python} is missing: run `make bench-drift`")
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    cases = [(rows, shifted) for rows in sizes for shifted in (False, True)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        folder = Path(tmp)
        reference = folder / "reference.parquet"
        pq.write_table(generate(np.random.default_rng([2026, 0]), REF_ROWS, False), reference)
        profile_path = folder / "profile.json"
        prof = call(sys.executable, "--side", "profile", "--reference", str(reference),
                    "--out", str(profile_path))  # fmt: skip
        print(
            f"reference {REF_ROWS:,} rows × {len(NAMES)} columns: profile built in "
            f"{prof['profile_s']:.2f} s ({prof['profile_kb']:.0f} KB, training-time cost)"
        )
        results = []
        for i, (rows, shifted) in enumerate(cases, start=1):
            current = folder / f"current-{rows}-{int(shifted)}.parquet"
            table = generate(np.random.default_rng([2026, i]), rows, shifted)
            pq.write_table(table, current, row_group_size=ROW_GROUP)
            del table
            ours = call(sys.executable, "--side", "warden", "--profile", str(profile_path),
                        "--current", str(current))  # fmt: skip
            runs = "2" if rows <= 100_000 else "1"  # Evidently takes minutes at 1M rows
            theirs = call(args.evidently_python, "--side", "evidently", "--reference",
                          str(reference), "--current", str(current), "--runs", runs)  # fmt: skip
            current.unlink()
            results.append(summarise(rows, shifted, ours, theirs))
            print(f"  done {rows:,} rows, shift={'yes' if shifted else 'no'} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    report(results, prof, theirs, time.perf_counter() - started)


def summarise(rows: int, shifted: bool, ours: dict[str, Any], theirs: dict[str, Any]) -> dict:
    differ = []
    for n in NAMES:
        if ours["drifted"][n] != theirs["drifted"][n]:
            stats = ours["stats"][n]
            key = "linf" if n in CATEGORICAL else "wasserstein"
            why = ours["why"][n] or f"{key} {stats[key]:.3f}, psi {stats['psi']:.3f}"
            differ.append(
                f"{n}: warden {'drift' if ours['drifted'][n] else 'ok'} ({why}) vs evidently "
                f"{'drift' if theirs['drifted'][n] else 'ok'} "
                f"({theirs['method'][n]}: {theirs['score'][n]:.3f})"
            )
    return {
        "rows": rows,
        "shift": shifted,
        "warden_s": round(ours["compute_s"], 3),
        "warden_parquet_s": round(ours["stream_s"], 3),
        "warden_object_s": round(ours["compute_object_s"], 3),
        "warden_runs": [round(t, 3) for t in ours["compute_runs"]],
        "warden_cpu_s": round(ours["compute_cpu_s"], 3),
        "warden_parquet_cpu_s": round(ours["stream_cpu_s"], 3),
        "evidently_cpu_s": round(theirs["run_cpu_s"], 2),
        "evidently_s": round(theirs["run_s"], 2),
        "evidently_runs": [round(t, 2) for t in theirs["runs"]],
        "evidently_read_s": round(theirs["read_s"], 2),
        "ratio": round(theirs["run_s"] / ours["compute_s"], 1),
        "ratio_parquet": round((theirs["run_s"] + theirs["read_s"]) / ours["stream_s"], 1),
        "agreement": agreement(ours["drifted"], theirs["drifted"]),
        "warden_drifted": sum(ours["drifted"].values()),
        "evidently_drifted": sum(theirs["drifted"].values()),
        "peak_mb": {
            "warden": round(ours["peak_mb"]),
            "warden_parquet": round(ours["stream_peak_mb"]),
            "evidently": round(theirs["peak_mb"]),
        },
        "data_mb": {"warden": round(ours["data_mb"]), "evidently": round(theirs["data_mb"])},
        "base_mb": {"warden": round(ours["base_mb"]), "evidently": round(theirs["base_mb"])},
        "differ": differ,
    }


def report(results: list[dict], prof: dict[str, Any], ev: dict[str, Any], elapsed: float) -> None:
    # Wall times on 2 cores are only as good as the machine is idle: say how busy it was.
    load = os.getloadavg()
    print(f"\nload average at the end (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"\n{'rows':>9} {'shift':>5} {'warden s':>8} {'+parquet s':>10} {'evidently s':>11} "
        f"{'ratio':>6} {'agree':>6} {'drifted w/e':>11} {'peak MB w / w-parquet / e':>26}"
    )
    for r in results:
        peak = r["peak_mb"]
        print(
            f"{r['rows']:>9,} {'yes' if r['shift'] else 'no':>5} {r['warden_s']:>8.3f} "
            f"{r['warden_parquet_s']:>10.3f} {r['evidently_s']:>11.2f} {r['ratio']:>5.0f}× "
            f"{r['agreement']:>6.0%} {r['warden_drifted']:>5}/{r['evidently_drifted']:<5} "
            f"{peak['warden']:>8} / {peak['warden_parquet']:>5} / {peak['evidently']:>6}"
        )
    print(
        "\nwarden s: compute_drift on the batch in memory (median of 3); +parquet s: row-group "
        f"reads ({ROW_GROUP:,} rows) streamed into a DriftAccumulator; evidently s: "
        "Report([DataDriftPreset()]).run after pandas.read_parquet; peak MB: VmHWM over each "
        "process's baseline (interpreter + imports)."
    )
    for r in results:
        print(
            f"{r['rows']:,} rows, shift={'yes' if r['shift'] else 'no'}: warden runs "
            f"{r['warden_runs']} (CPU {r['warden_cpu_s']:.2f} s, +parquet CPU "
            f"{r['warden_parquet_cpu_s']:.2f} s), object categoricals "
            f"{r['warden_object_s']:.3f} s; "
            f"evidently runs {r['evidently_runs']} (CPU {r['evidently_cpu_s']:.1f} s), pandas read "
            f"{r['evidently_read_s']:.2f} s (ratio incl. reads {r['ratio_parquet']:.0f}×); "
            f"baseline MB warden {r['base_mb']['warden']}, evidently {r['base_mb']['evidently']}"
        )
        for line in r["differ"]:
            print(f"    differs: {line}")
    last = results[-1]
    out = {
        "rows": last["rows"],
        "cols": len(NAMES),
        "shift": last["shift"],
        "warden_s": last["warden_s"],
        "warden_parquet_s": last["warden_parquet_s"],
        "evidently_s": last["evidently_s"],
        "ratio": last["ratio"],
        "agreement": last["agreement"],
        # Our peak while streaming the Parquet file (the production path); both sides below.
        "peak_mb": last["peak_mb"]["warden_parquet"],
        "peak_mb_by_side": last["peak_mb"],
        "reference_rows": REF_ROWS,
        "profile_s": round(prof["profile_s"], 3),
        "evidently_version": ev["version"],
        "seconds": round(elapsed),
        "load_15min": round(load[2], 2),
        "cases": [
            {k: v for k, v in r.items() if k not in ("differ", "base_mb", "warden_runs")}
            for r in results
        ],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
