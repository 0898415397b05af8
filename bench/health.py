"""Benchmark: `health` latency and cold import, against baselines measured in the same run.

    .venv/bin/python bench/health.py

Baselines: a trivial functions-framework HTTP function (latency) and a bare
`import functions_framework` (cold import). Prints medians and ratios; asserts nothing.

Latency twice: with the example champions (a few KB each), then with customer-segments' champion
replaced by a 50 MB artifact. A shallow check reads the artifact's metadata, not its bytes, so the
second should cost about the first; ``verify_50mb_ms`` is the full download-and-sha256 check of
that artifact (``Registry.verify``, what a shallow check did before), for scale.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TRIVIAL = """
import functions_framework
@functions_framework.http
def ping(request):
    return {"status": "ok"}
"""


def cold_import(code: str, env: dict[str, str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


BIG_MODEL = "customer-segments"
BIG_BYTES = 50 * 1024 * 1024


def champion_of(rt, model: str, size: int) -> int:
    """Register and promote a loadable joblib artifact of at least ``size`` bytes."""
    import joblib

    from warden.store.registry import ARTIFACT

    buf = io.BytesIO()
    joblib.dump(os.urandom(size), buf)
    registry = rt.registry()
    version = registry.claim_version(model, run_id="bench")
    registry.register(model, version, {ARTIFACT: buf.getvalue()}, {"task": "bench"})
    registry.promote(model, version, reason="bench: a 50 MB champion", actor="bench")
    return version


def main() -> None:
    from functions_framework import create_app
    from google.cloud import storage

    from warden import runtime
    from warden.jobs.messages import RunRequest
    from warden.jobs.retrain import retrain
    from warden.settings import Settings
    from warden_local.examples import breast_cancer_frame, customer_frame, write_partitions
    from warden_local.gcs import StorageEmulator

    with StorageEmulator() as gcs:
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.host
        client = storage.Client(project="bench")
        for name in ("reg", "data"):
            client.create_bucket(name)
        write_partitions(
            client,
            bucket="data",
            prefix="customers",
            frame=customer_frame(2000),
            fmt="parquet",
            end=date(2026, 11, 20),
            days=7,
        )
        write_partitions(
            client,
            bucket="data",
            prefix="breast-cancer",
            frame=breast_cancer_frame(),
            fmt="csv",
            end=date(2026, 11, 20),
            days=7,
        )
        settings = Settings(
            project="bench",
            registry_bucket="reg",
            data_bucket="data",
            metrics_enabled=False,
            config_path=ROOT / "warden.yaml",
        )
        rt = runtime.build(settings, storage=client)
        for model in rt.config.models:
            retrain(
                RunRequest(
                    model=model,
                    reason="manual",
                    key=model,
                    message_id=model,
                    as_of=date(2026, 11, 20),
                ),
                rt,
            )
        runtime.install(rt)

        with tempfile.TemporaryDirectory() as tmp:
            trivial = Path(tmp) / "main.py"
            trivial.write_text(TRIVIAL)
            base = create_app("ping", str(trivial), "http").test_client()
            health = create_app("health", str(ROOT / "functions/health/main.py"), "http")
            hc = health.test_client()
            hc.get("/")  # warm: clients built once per instance

            def median_ms(fn, n: int = 30) -> float:
                samples = []
                for _ in range(n):
                    t = time.perf_counter()
                    fn()
                    samples.append((time.perf_counter() - t) * 1000)
                return statistics.median(samples)

            base_ms = median_ms(lambda: base.get("/"))
            shallow_ms = median_ms(lambda: hc.get("/"))
            deep_ms = median_ms(lambda: hc.get("/?deep=true"), n=10)

            big_version = champion_of(rt, BIG_MODEL, BIG_BYTES)
            assert hc.get("/").get_json()["models"][BIG_MODEL]["verified_by"] == "metadata"
            base_big_ms = median_ms(lambda: base.get("/"))
            shallow_big_ms = median_ms(lambda: hc.get("/"))
            deep_big_ms = median_ms(lambda: hc.get("/?deep=true"), n=3)
            verify_big_ms = median_ms(lambda: rt.registry().verify(BIG_MODEL, big_version), n=3)

        env = {**os.environ}
        base_import = cold_import("import functions_framework", env)
        health_import = cold_import(
            f"import runpy; runpy.run_path({str(ROOT / 'functions/health/main.py')!r})", env
        )
        retrain_import = cold_import(
            f"import runpy; runpy.run_path({str(ROOT / 'functions/retrain_model/main.py')!r});"
            "import warden.jobs.retrain, sklearn.cluster, pandas",
            env,
        )

    result = {
        "trivial_ms": round(base_ms, 2),
        "health_ms": round(shallow_ms, 2),
        "health_deep_ms": round(deep_ms, 2),
        "health_vs_trivial": round(shallow_ms / base_ms, 1),
        "trivial_50mb_run_ms": round(base_big_ms, 2),
        "health_50mb_ms": round(shallow_big_ms, 2),
        "health_50mb_vs_trivial": round(shallow_big_ms / base_big_ms, 1),
        "health_50mb_vs_small": round(shallow_big_ms / shallow_ms, 2),
        "health_deep_50mb_ms": round(deep_big_ms, 2),
        "verify_50mb_ms": round(verify_big_ms, 2),
        "import_ff_s": round(base_import, 3),
        "import_health_s": round(health_import, 3),
        "import_retrain_s": round(retrain_import, 3),
        "health_import_vs_ff": round(health_import / base_import, 2),
    }
    print(
        f"trivial function: {base_ms:.2f} ms   health: {shallow_ms:.2f} ms "
        f"({result['health_vs_trivial']}x)   health?deep=true: {deep_ms:.2f} ms"
    )
    print(
        f"with a 50 MB champion: trivial function {base_big_ms:.2f} ms   health: "
        f"{shallow_big_ms:.2f} ms ({result['health_50mb_vs_trivial']}x trivial, "
        f"{result['health_50mb_vs_small']}x the small-champion health)   "
        f"health?deep=true: {deep_big_ms:.2f} ms   full sha256 verify: {verify_big_ms:.2f} ms"
    )
    print(
        f"cold import: functions_framework {base_import:.2f}s, health {health_import:.2f}s "
        f"({result['health_import_vs_ff']}x), retrain stack {retrain_import:.2f}s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
