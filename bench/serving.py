"""Benchmark: what `Champion` and `PredictionLog` add to each prediction, against calling the
model directly in the same run.

    make bench-serving        (or: .venv/bin/python bench/serving.py [--calls 20000])

A breast-cancer classifier (StandardScaler + LogisticRegression) registered and promoted in
fake-gcs-server. Three loops over single-row predictions, interleaved in rounds, medians of the
rounds:

* ``direct``: ``estimator.predict_proba(row)``;
* ``champion``: ``champion.current()`` then the same call, counted (``served``);
* ``champion+log``: that, plus ``PredictionLog.log`` of the row's features and score (the
  background writer flushes to the emulator meanwhile, as in production).

Prints microseconds per prediction and the overhead against ``direct``; last line, JSON with
direct_us, champion_us, logged_us, overhead_us, ratio (champion+log / direct). The overhead is
measured apart, since it is smaller than the model call's own noise: a loop doing only
``current`` + ``served`` + ``log`` minus an empty loop. Asserts nothing. The issue's aim:
overhead under 50 us.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

MODEL = "bench-risk"
ROUNDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="predictions per loop and round")
    args = parser.parse_args()

    import joblib
    from google.cloud import storage
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from warden.serving import Champion, PredictionLog
    from warden.store.registry import ARTIFACT, Registry
    from warden_local.gcs import StorageEmulator

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    features = list(X.columns)
    # numpy rows: a one-row DataFrame costs ~1.5 ms in pandas alone, which would hide the rest
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    estimator.fit(X.to_numpy(), y)
    rows = [X.to_numpy()[i : i + 1] for i in range(200)]
    dicts = [{f: float(v) for f, v in zip(features, X.iloc[i], strict=True)} for i in range(200)]

    with StorageEmulator() as emulator:
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
        client = storage.Client(project="bench")
        client.create_bucket("bench-registry")
        client.create_bucket("bench-data")
        registry = Registry(client, "bench-registry")
        buf = io.BytesIO()
        joblib.dump(estimator, buf)
        version = registry.claim_version(MODEL, run_id="bench")
        registry.register(MODEL, version, {ARTIFACT: buf.getvalue()}, {"task": "classifier"})
        registry.promote(MODEL, version, reason="bench", actor="bench")
        champion = Champion(MODEL, registry, check_interval=30)
        champion.load()
        plog = PredictionLog(MODEL, client.bucket("bench-data"), flush_at_exit=False)

        def direct(n: int) -> None:
            for i in range(n):
                estimator.predict_proba(rows[i % 200])

        def with_champion(n: int) -> None:
            for i in range(n):
                loaded = champion.current()
                loaded.estimator.predict_proba(rows[i % 200])
                champion.served()

        def with_log(n: int) -> None:
            for i in range(n):
                loaded = champion.current()
                score = loaded.estimator.predict_proba(rows[i % 200])[0, 1]
                champion.served()
                plog.log(dicts[i % 200], {"score": float(score)}, version=loaded.version)

        def bookkeeping_only(n: int) -> None:  # what Warden adds, without the model
            for i in range(n):
                loaded = champion.current()
                champion.served()
                plog.log(dicts[i % 200], {"score": 0.5}, version=loaded.version)

        def empty(n: int) -> None:
            for i in range(n):
                rows[i % 200]

        loops = {
            "direct": direct,
            "champion": with_champion,
            "champion+log": with_log,
            "warden only": bookkeeping_only,
            "empty loop": empty,
        }
        timings: dict[str, list[float]] = {name: [] for name in loops}
        for loop in loops.values():
            loop(200)  # warm up
        for _ in range(ROUNDS):
            for name, loop in loops.items():
                t0 = time.perf_counter()
                loop(args.calls)
                timings[name].append((time.perf_counter() - t0) / args.calls * 1e6)
        plog.close()
        stats = plog.stats()

    med = {name: statistics.median(values) for name, values in timings.items()}
    warden_us = med["warden only"] - med["empty loop"]
    print(f"{'loop':<14}{'us/prediction':>15}{'vs direct':>11}")
    for name in loops:
        print(f"{name:<14}{med[name]:>15.1f}{med[name] / med['direct']:>10.2f}x")
    print(f"Warden's own work per prediction (current + served + log): {warden_us:.1f} us")
    print(
        f"prediction log: {stats['written']} rows in {stats['files']} files, "
        f"{stats['dropped']} dropped; {args.calls} calls x {ROUNDS} rounds per loop, "
        f"{os.cpu_count()} cores"
    )
    result = {
        "direct_us": round(med["direct"], 2),
        "champion_us": round(med["champion"], 2),
        "logged_us": round(med["champion+log"], 2),
        "overhead_us": round(warden_us, 2),
        "ratio": round(med["champion+log"] / med["direct"], 3),
        "rows_written": stats["written"],
        "dropped": stats["dropped"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
