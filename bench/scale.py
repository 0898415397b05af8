"""Benchmark: one monitor run over a large window, as 1, 2 and 4 Cloud Run job tasks.

    make bench-scale        (or: .venv/bin/python bench/scale.py [--rows 20000000] [--keep])

fake-gcs-server (filesystem backend, ``--backend memory`` for the other) holds a generated
window of ``--rows`` rows (default 20M) × 25 numeric features — 20 continuous, rounded to two
decimals as real feature data is (so Parquet compresses them like it), and 5 integer counts —
as Parquet files ``scale/dt=YYYY-MM-DD/part-NNN.parquet``, 7 days × ``--files-per-day`` (8).
The files are generated once into a cache directory (``--cache``) and uploaded each run;
``--keep`` keeps the cache for the next run. A KMeans champion (the ``customer-segments``
shape, 25 features) is trained in-process with ``retrain`` on a small window (``--train-rows``,
50k) before it, so its ``profile.json`` exists. The bench's warden.yaml (a temp dir,
``WARDEN_CONFIG``) sets ``drift.max_eval_rows`` to 20,000: the scoring sample (silhouette on
it) is a fixed cost per run, not what is measured.

Runs, each under a fresh request key, each task ``python -m warden.jobs.task`` as a subprocess
with the environment Cloud Run gives a task (``WARDEN_JOB=monitor``, ``WARDEN_RUN_REQUEST``,
``CLOUD_RUN_*``):

* ``single``: one task (``CLOUD_RUN_TASK_COUNT=1``, i.e. ``monitor()``, what a function runs),
  unpinned, library threads at their defaults: one process with both cores (a 2-vCPU task);
* ``tasks N`` (1, 2, 4): N tasks started at once with one ``CLOUD_RUN_EXECUTION``, each a
  1-vCPU Cloud Run task: task *i* pinned to core ``i % 2`` (``sched_setaffinity``), OpenMP/BLAS
  threads 1 and pyarrow's CPU pool 1 (``pyarrow.set_cpu_count``, set by a ``python -c``
  wrapper before ``warden.jobs.task.main``). ``tasks 1`` is the single-process path on one core.

Wall time from the first start to the last exit; rows/s = window rows / wall; peak memory =
the largest ``ru_maxrss`` of the run's tasks (``os.wait4``); the tasks' CPU seconds; and, as
the two cores are shared, fake-gcs-server's CPU seconds during the run and the CPU the rest of
the machine used meanwhile (``/proc/stat``): a speedup is only worth reading where that is
near zero. ``--repeat`` rounds (default 2) run every setup in turn; each setup's fastest is
kept. Each run must leave exactly one ``drift.json`` counting every row of every file, with
the same verdicts as the others. Speedup N = t(tasks 1) / t(tasks N). Prints phase timings,
each run, a table, and last a JSON line. Asserts nothing about speed. Figures, method and
what they mean at 1B rows a day: docs/scale.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

MODEL = "scale-segments"
PREFIX = "scale"
TRAIN_PREFIX = "scale-train"
CONTINUOUS, DISCRETE = 20, 5
FEATURES = [f"x{i:02d}" for i in range(CONTINUOUS)] + [f"n{i:02d}" for i in range(DISCRETE)]
CLUSTERS = 4
TRAINED = date(2026, 11, 1)
AS_OF = date(2026, 11, 20)
DAYS = 7
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: A 1-vCPU task: pyarrow's CPU pool set to one thread before the task's code runs.
ONE_CPU = (
    "import sys, pyarrow; pyarrow.set_cpu_count(1); "
    "from warden.jobs.task import main; sys.exit(main())"
)


# --- data ---------------------------------------------------------------------------------------


def _centers(seed: int = 7) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 4.0, (CLUSTERS, CONTINUOUS)), rng.uniform(
        1.0, 12.0, (CLUSTERS, DISCRETE)
    )


def make_frame(rows: int, seed: int, shift: float = 0.0) -> Any:
    """``rows`` rows around four cluster centres: 20 continuous features (two decimals) and 5
    Poisson counts; ``shift`` moves the first five continuous features (drift to detect)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    centers, rates = _centers()
    label = rng.integers(0, CLUSTERS, rows)
    cont = centers[label] + rng.standard_normal((rows, CONTINUOUS))
    cont[:, :5] += shift
    cont = np.round(cont, 2)
    counts = rng.poisson(rates[label]).astype(np.int64)
    arrays = [pa.array(cont[:, i]) for i in range(CONTINUOUS)]
    arrays += [pa.array(counts[:, i]) for i in range(DISCRETE)]
    return pa.table(arrays, names=FEATURES)


def generate(cache: Path, rows: int, files_per_day: int) -> list[tuple[str, Path, int]]:
    """The window's files in ``cache`` (written once): ``(object name, path, rows)``."""
    import pyarrow.parquet as pq

    files = DAYS * files_per_day
    per_file = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    out = []
    cache.mkdir(parents=True, exist_ok=True)
    for d in range(DAYS):
        day = AS_OF - timedelta(days=DAYS - 1 - d)
        for f in range(files_per_day):
            i = d * files_per_day + f
            path = cache / f"{day.isoformat()}-part-{f:03d}-{per_file[i]}.parquet"
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                pq.write_table(make_frame(per_file[i], seed=1000 + i, shift=0.3), tmp)
                tmp.rename(path)
            out.append((f"{PREFIX}/dt={day.isoformat()}/part-{f:03d}.parquet", path, per_file[i]))
    return out


def upload(client: Any, bucket: str, files: list[tuple[str, Path, int]]) -> None:
    from warden.store.data import ROWS_METADATA

    def one(item: tuple[str, Path, int]) -> None:
        name, path, rows = item
        blob = client.bucket(bucket).blob(name, chunk_size=64 * 1024 * 1024)
        blob.metadata = {ROWS_METADATA: str(rows)}
        blob.upload_from_filename(str(path), content_type="application/vnd.apache.parquet")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, files))


def write_training(client: Any, bucket: str, rows: int) -> None:
    import io

    import pyarrow.parquet as pq

    for d in range(DAYS):
        day = TRAINED - timedelta(days=DAYS - 1 - d)
        buf = io.BytesIO()
        pq.write_table(make_frame(rows // DAYS, seed=d), buf)
        blob = client.bucket(bucket).blob(f"{TRAIN_PREFIX}/dt={day.isoformat()}/part-000.parquet")
        blob.upload_from_string(buf.getvalue(), content_type="application/vnd.apache.parquet")


def config(max_eval_rows: int, prefix: str) -> dict[str, Any]:
    import yaml

    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    model = copy.deepcopy(raw["models"]["customer-segments"])
    model["description"] = "bench/scale.py: KMeans over 25 generated features."
    model["features"] = FEATURES
    model["data"] = {"prefix": prefix, "format": "parquet", "window_days": DAYS}
    model["gate"] = {"metric": "silhouette", "min": 0.0, "max_relative_drop": 0.5}
    model["drift"] = {"window_days": DAYS, "max_eval_rows": max_eval_rows}
    model.pop("schedules", None)
    model.pop("housekeeping", None)
    raw["models"] = {MODEL: model}
    return raw


# --- runs ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run(
    env: dict[str, str], request: Any, count: int, *, pinned: bool, server_pid: int, logs: Path
) -> dict[str, Any]:
    """One job execution of ``count`` tasks, all started at once; waits for every task."""
    execution = f"bench-{uuid.uuid4().hex[:8]}"
    procs = []
    cpu0, busy0 = cpu_seconds(server_pid), machine_busy()
    start = time.perf_counter()
    for i in range(count):
        task_env = {
            **env,
            "WARDEN_JOB": "monitor",
            "WARDEN_RUN_REQUEST": request.to_json(),
            "CLOUD_RUN_EXECUTION": execution,
            "CLOUD_RUN_TASK_INDEX": str(i),
            "CLOUD_RUN_TASK_COUNT": str(count),
            "CLOUD_RUN_TASK_ATTEMPT": "0",
        }
        if pinned:
            task_env.update(dict.fromkeys(THREAD_VARS, "1"))
            cmd = [sys.executable, "-c", ONE_CPU]
            core = i % (os.cpu_count() or 1)

            def pin(core: int = core) -> None:
                os.sched_setaffinity(0, {core})
        else:
            for var in THREAD_VARS:
                task_env.pop(var, None)
            cmd, pin = [sys.executable, "-m", "warden.jobs.task"], None  # type: ignore[assignment]
        out = (logs / f"{execution}-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                cmd, env=task_env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin
            )
        )
        out.close()
    peak_kb, codes, cpu_s, ends = 0, {}, 0.0, []
    left = list(procs)
    while left:  # poll, so each task's own end is known (the last one ends the run)
        for proc in list(left):
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == 0:
                continue
            ends.append(time.perf_counter() - start)
            left.remove(proc)
            proc.returncode = codes[proc.pid] = os.waitstatus_to_exitcode(status)
            peak_kb = max(peak_kb, usage.ru_maxrss)  # this task's own peak RSS, in KiB
            cpu_s += usage.ru_utime + usage.ru_stime
        time.sleep(0.02)
    wall = max(ends)
    gcs_cpu = cpu_seconds(server_pid) - cpu0
    busy = machine_busy() - busy0
    if any(codes.values()):
        raise SystemExit(f"a task failed ({codes}); logs in {logs}")
    return {
        "wall_s": wall,
        "first_end_s": min(ends),
        "peak_rss_mb": peak_kb / 1024,
        "task_cpu_s": cpu_s,
        "gcs_cpu_s": gcs_cpu,
        # CPU the rest of the machine used meanwhile (other work on the shared cores)
        "other_cpu_s": max(0.0, busy - cpu_s - gcs_cpu),
    }


def results(client: Any, bucket: str) -> dict[str, dict[str, Any]]:
    return {
        b.name: json.loads(b.download_as_bytes())
        for b in client.list_blobs(bucket, prefix=f"{MODEL}/monitoring/")
        if b.name.endswith("/drift.json")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows in the window")
    parser.add_argument("--files-per-day", type=int, default=8, help="Parquet files per day")
    parser.add_argument("--tasks", default="1,2,4", help="task counts to run (pinned, 1 vCPU)")
    parser.add_argument("--train-rows", type=int, default=50_000, help="champion training rows")
    parser.add_argument("--max-eval-rows", type=int, default=20_000, help="scoring sample")
    parser.add_argument("--backend", choices=("filesystem", "memory"), default="filesystem")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "warden-bench-scale",
        help="where the generated Parquet files are kept",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="rounds of runs; each setup's fastest is kept"
    )
    parser.add_argument("--keep", action="store_true", help="keep the cache for the next run")
    args = parser.parse_args()
    counts = [int(n) for n in args.tasks.split(",")]

    import yaml
    from google.cloud import storage

    from warden import runtime
    from warden.jobs.messages import RunRequest
    from warden.jobs.retrain import retrain
    from warden.settings import Settings
    from warden_local.gcs import StorageEmulator

    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    files = generate(args.cache, args.rows, args.files_per_day)
    data_bytes = sum(p.stat().st_size for _, p, _ in files)
    phases["generate"] = time.perf_counter() - t0
    print(
        f"window: {args.rows:,} rows x {len(FEATURES)} columns, {len(files)} Parquet files, "
        f"{data_bytes / 2**20:,.0f} MiB ({phases['generate']:.1f} s to generate or find)",
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="warden-bench-scale-"))
    logs = work / "tasks"
    logs.mkdir()
    root = work / "gcs" if args.backend == "filesystem" else None
    if root is not None:
        root.mkdir()
    emulator = StorageEmulator(root=root)
    try:
        with emulator:
            os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
            server_pid = emulator.pid
            client = storage.Client(project="warden-bench")
            suffix = uuid.uuid4().hex[:8]
            buckets = {k: f"{k}-{suffix}" for k in ("registry", "alerts", "data", "backup")}
            for name in buckets.values():
                client.create_bucket(name)
            t0 = time.perf_counter()
            upload(client, buckets["data"], files)
            phases["upload"] = time.perf_counter() - t0
            print(f"upload: {phases['upload']:.1f} s ({args.backend} backend)", flush=True)

            # The champion: trained in-process on a small window of its own prefix.
            t0 = time.perf_counter()
            write_training(client, buckets["data"], args.train_rows)
            train_cfg = work / "warden-train.yaml"
            train_cfg.write_text(yaml.safe_dump(config(args.max_eval_rows, TRAIN_PREFIX)))
            cfg_path = work / "warden.yaml"
            cfg_path.write_text(yaml.safe_dump(config(args.max_eval_rows, PREFIX)))
            settings = Settings(
                project="warden-bench",
                config_path=train_cfg,
                registry_bucket=buckets["registry"],
                alert_bucket=buckets["alerts"],
                data_bucket=buckets["data"],
                backup_bucket=buckets["backup"],
                metrics_enabled=False,
            )
            rt = runtime.build(settings, storage=client)
            request = RunRequest(
                model=MODEL, reason="manual", key="train", message_id="train", as_of=TRAINED
            )
            trained = retrain(request, rt)
            if not trained.promoted:
                raise SystemExit(f"the champion was not promoted: {trained}")
            phases["train"] = time.perf_counter() - t0
            print(f"champion: v{trained.version} promoted ({phases['train']:.1f} s)")

            env = {
                **os.environ,
                "STORAGE_EMULATOR_HOST": emulator.host,
                "WARDEN_PROJECT": "warden-bench",
                "WARDEN_CONFIG": str(cfg_path),
                "WARDEN_REGISTRY_BUCKET": buckets["registry"],
                "WARDEN_ALERT_BUCKET": buckets["alerts"],
                "WARDEN_DATA_BUCKET": buckets["data"],
                "WARDEN_BACKUP_BUCKET": buckets["backup"],
                "WARDEN_METRICS": "off",
                "PYTHONPATH": os.pathsep.join(
                    [str(ROOT / "shared"), str(ROOT / "local"), os.environ.get("PYTHONPATH", "")]
                ),
            }
            plan = [("single", 1, False)] + [(f"tasks {n}", n, True) for n in counts]
            measured: dict[str, dict[str, Any]] = {}
            verdicts = set()
            seen = results(client, buckets["registry"])
            for round_ in range(args.repeat):  # rounds interleave the setups; best round kept
                for label, count, pinned in plan:
                    key = f"bench-{label.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
                    req = RunRequest(
                        model=MODEL, reason="manual", key=key, message_id=key, as_of=AS_OF
                    )
                    got = run(env, req, count, pinned=pinned, server_pid=server_pid, logs=logs)
                    now = results(client, buckets["registry"])
                    new = [now[k] for k in now if k not in seen]
                    seen = now
                    if len(new) != 1:
                        raise SystemExit(f"{label}: {len(new)} drift.json results, not one")
                    window = new[0]["window"]
                    if window["rows"] != args.rows or window["file_count"] != len(files):
                        raise SystemExit(f"{label}: counted {window}")
                    drift = new[0]["drift"]
                    verdicts.add(json.dumps([drift["dataset_drift"], drift["drifted"]]))
                    print(
                        f"round {round_ + 1} {label}: {got['wall_s']:.1f} s (first task done "
                        f"{got['first_end_s']:.1f} s), peak {got['peak_rss_mb']:.0f} MB/task, "
                        f"tasks {got['task_cpu_s']:.1f} CPU s, fake-gcs {got['gcs_cpu_s']:.1f} "
                        f"CPU s, other work on the machine {got['other_cpu_s']:.1f} CPU s",
                        flush=True,
                    )
                    if label not in measured or got["wall_s"] < measured[label]["wall_s"]:
                        measured[label] = got
            if len(verdicts) != 1:
                raise SystemExit(f"the runs disagree: {verdicts}")
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(args.cache, ignore_errors=True)

    base = measured["tasks 1"]["wall_s"] if "tasks 1" in measured else None
    print()
    print(
        f"{'run':<9}{'vCPU/task':>10}{'wall s':>8}{'rows/s':>12}{'peak MB':>9}"
        f"{'task CPU s':>11}{'rows/CPU s':>12}{'gcs CPU s':>10}{'other CPU s':>12}{'speedup':>9}"
    )
    for label, m in measured.items():
        speed = f"{base / m['wall_s']:.2f}x" if base and label != "single" else "-"
        print(
            f"{label:<9}{'2 (free)' if label == 'single' else '1':>10}{m['wall_s']:>8.1f}"
            f"{args.rows / m['wall_s']:>12,.0f}{m['peak_rss_mb']:>9.0f}{m['task_cpu_s']:>11.1f}"
            f"{args.rows / m['task_cpu_s']:>12,.0f}{m['gcs_cpu_s']:>10.1f}"
            f"{m['other_cpu_s']:>12.1f}{speed:>9}"
        )
    drifted = json.loads(verdicts.pop())
    print(f"verdicts equal in every run: dataset_drift={drifted[0]}, {len(drifted[1])} drifted")

    def figures(m: dict[str, Any]) -> dict[str, Any]:
        return {
            "s": round(m["wall_s"], 2),
            "cpu_s": round(m["task_cpu_s"], 1),
            "gcs_cpu_s": round(m["gcs_cpu_s"], 1),
            "other_cpu_s": round(m["other_cpu_s"], 1),
        }

    result: dict[str, Any] = {
        "rows": args.rows,
        "columns": len(FEATURES),
        "files": len(files),
        "data_mib": round(data_bytes / 2**20, 1),
        "backend": args.backend,
        "repeat": args.repeat,
        "single_s": round(measured["single"]["wall_s"], 2),
        "rows_per_s_single": round(args.rows / measured["single"]["wall_s"]),
        "peak_rss_mb_single": round(measured["single"]["peak_rss_mb"]),
    }
    for n in counts:
        m = measured[f"tasks {n}"]
        result[f"tasks_{n}_s"] = round(m["wall_s"], 2)
        result[f"rows_per_s_{n}"] = round(args.rows / m["wall_s"])
        result[f"peak_rss_mb_{n}"] = round(m["peak_rss_mb"])
        result[f"rows_per_cpu_s_{n}"] = round(args.rows / m["task_cpu_s"])
        if base and n != 1:
            result[f"speedup_{n}"] = round(base / m["wall_s"], 2)
    result["runs"] = {k.replace(" ", "_"): figures(m) for k, m in measured.items()}
    result["phases_s"] = {k: round(v, 1) for k, v in phases.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
