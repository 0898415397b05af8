"""`warden show` and `warden versions` as summaries, on a real registry in the storage emulator.

Two versions come from the retrain use case (v1 the first, v2 gated against it and promoted); a
third is registered through the Registry with a gate decision the real gate made against v2's
numbers: a rejected candidate, as a worse retrain would leave it.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from warden.cli.main import main
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import retrain
from warden.ml.evaluation import Evaluation
from warden.ml.gate import decide
from warden.store.registry import ARTIFACT

ROOT = Path(__file__).resolve().parents[1]
MODEL = "breast-cancer-risk"


@pytest.fixture
def registry(seed, make_runtime, bucket_names, monkeypatch):
    seed(days=5, models=(MODEL,))
    rt = make_runtime(install=False)
    for key in ("a", "b"):
        retrain(
            RunRequest(
                model=MODEL, reason="manual", key=key, message_id=key, as_of=date(2026, 11, 20)
            ),
            rt,
        )
    reg = rt.registry()
    champion = reg.manifest(MODEL, 2)
    worse = {name: value - 0.2 for name, value in champion["metrics"]["candidate"].items()}
    decision = decide(
        metric="roc_auc",
        floor=0.7,
        max_relative_drop=0.05,
        candidate=Evaluation(metrics=worse),
        champion=Evaluation(metrics=champion["metrics"]["candidate"]),
        champion_version=2,
    )
    assert not decision.passed
    manifest = copy.deepcopy({k: v for k, v in champion.items() if k != "files"})
    manifest.update(
        run_id="worse-run",
        created_at="2026-11-21T05:00:00+00:00",
        champion_version=2,
        metrics={"candidate": worse, "champion": champion["metrics"]["candidate"]},
        gate=decision.to_dict(),
    )
    files = {name: reg.read_file(MODEL, 2, name, champion) for name in champion["files"]}
    version = reg.claim_version(MODEL, "worse-run")
    reg.register(MODEL, version, files, manifest)
    monkeypatch.setenv("WARDEN_REGISTRY_BUCKET", bucket_names["registry"])
    monkeypatch.setenv("WARDEN_CONFIG", str(ROOT / "warden.yaml"))
    return reg


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def line_of(text: str, start: str) -> str:
    """The one line that starts with ``start`` (after indentation and the champion mark)."""
    found = [ln for ln in text.splitlines() if ln.lstrip(" *").startswith(start)]
    assert len(found) == 1, (start, text)
    return found[0]


def test_versions_shows_each_candidate_beside_the_champion_it_was_gated_against(registry) -> None:
    text = invoke("versions", MODEL)
    v1, v2, v3 = (registry.manifest(MODEL, n) for n in (1, 2, 3))
    auc = {n: m["metrics"]["candidate"]["roc_auc"] for n, m in ((1, v1), (2, v2), (3, v3))}
    assert text.splitlines()[0] == (f"{MODEL} · gate metric roc_auc · * current champion (v2)")
    first, second, third = line_of(text, "v1 "), line_of(text, "v2 "), line_of(text, "v3 ")
    assert second.startswith("*")  # the current champion is marked, and only it
    assert not first.startswith("*")
    assert not third.startswith("*")
    assert "first version" in first
    assert f"{auc[1]:.4f} (v1)" in second  # v2 was gated against v1's score
    assert f"{auc[2]:.4f} (v2)" in third  # and v3 against v2's
    assert f"{auc[3]:.4f}" in third
    change = 100 * (auc[3] - auc[2]) / auc[2]
    assert f"{change:+.2f}%" in third
    # The failing check is on the line: why "FAIL" is read off the row, not guessed.
    assert re.search(r"FAIL: roc_auc [\d.]+ is [\d.]+% below champion v2", third), third
    assert second.rstrip().endswith("pass")


def test_versions_json_rows_carry_the_champion_value(registry) -> None:
    rows = json.loads(invoke("--json", "versions", MODEL))
    v2, v3 = registry.manifest(MODEL, 2), registry.manifest(MODEL, 3)
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["champion"] for r in rows] == [False, True, False]
    assert [r["gate_passed"] for r in rows] == [True, True, False]
    assert [r["compared_with"] for r in rows] == [None, 1, 2]
    assert rows[0]["champion_value"] is None
    assert rows[2]["value"] == v3["metrics"]["candidate"]["roc_auc"]
    assert rows[2]["champion_value"] == v2["metrics"]["candidate"]["roc_auc"]
    assert rows[2]["relative_change"] == pytest.approx(
        (rows[2]["value"] - rows[2]["champion_value"]) / rows[2]["champion_value"]
    )
    assert "below champion v2" in rows[2]["gate_reason"]
    assert rows[1]["gate_reason"] is None


def test_show_summarises_a_rejected_version(registry) -> None:
    text = invoke("show", f"{MODEL}@3")
    manifest = registry.manifest(MODEL, 3)
    assert text.splitlines()[0] == f"{MODEL} v3"  # not the champion: no mark
    assert "Gate: REJECTED · roc_auc · compared with champion v2" in text
    failed = [r for r in manifest["gate"]["reasons"] if r.endswith(": rejected")]
    assert failed
    for reason in failed:
        assert f"  FAIL  {reason.removesuffix(': rejected')}" in text
    assert "  ok    candidate passed its sanity checks" in text
    # Candidate and champion on the same row, metric by metric.
    cand, champ = manifest["metrics"]["candidate"], manifest["metrics"]["champion"]
    for name in ("roc_auc", "f1", "accuracy"):
        label = f"{name} (gate)" if name == "roc_auc" else name
        row = line_of(text, label).split()
        assert row[-3:] == [
            f"{cand[name]:.4f}",
            f"{champ[name]:.4f}",
            f"{cand[name] - champ[name]:+.4f}",
        ]
    assert "champion v2" in line_of(text, "candidate")


def test_show_of_the_champion_has_data_window_row_counts_and_file_sizes(registry) -> None:
    text = invoke("show", MODEL)
    manifest = registry.manifest(MODEL, "champion")
    data = manifest["data"]
    assert text.splitlines()[0] == f"{MODEL} v2 · current champion"
    assert "Gate: PASSED · roc_auc · compared with champion v1" in text
    assert line_of(text, "window").split(None, 1)[1] == f"{data['start']} → {data['end']}"
    assert line_of(text, "rows").split(None, 1)[1] == (
        f"{data['rows']:,} read · {data['train_rows']:,} training · "
        f"{data['holdout_rows']:,} held out"
    )
    assert data["train_rows"] + data["holdout_rows"] == data["rows"]
    assert line_of(text, "partitions").split()[1] == str(data["partition_count"])
    assert line_of(text, "data files").split()[2] == str(data["file_count"])
    counts = manifest["evaluation"]["candidate"]["class_counts"]
    assert " · ".join(f"{k}: {v:,}" for k, v in counts.items()) in line_of(text, "held-out")
    files = manifest["files"]
    assert set(files) == {ARTIFACT, "profile.json", "report.html"}
    assert line_of(text, "Files (").startswith("Files (3, ")
    for name, record in files.items():
        row = line_of(text, name)
        size = record["size"]
        shown = f"{size:,} B" if size < 1024 else f"{size / 1024:,.1f} KB"
        assert shown in row, (name, size, row)
        assert f"sha256 {record['sha256'][:12]}…" in row


def test_show_json_is_the_whole_manifest(registry) -> None:
    for ref, version in ((f"{MODEL}@3", 3), (MODEL, 2)):
        assert json.loads(invoke("--json", "show", ref)) == registry.manifest(MODEL, version)


def test_the_version_report_draws_the_classifier_sections_computed_at_retrain(
    registry, tmp_path
) -> None:
    manifest = registry.manifest(MODEL, 2)
    details = manifest["evaluation"]["candidate"]
    assert 2 <= len(details["roc"]["fpr"]) <= 100
    assert sum(details["confusion"][k] for k in ("tp", "fp", "fn", "tn")) == details["n_rows"]
    assert details["importance"]["kind"] == "coefficient"  # StandardScaler + LogisticRegression
    features = set(manifest["features"])
    assert {e["name"] for e in details["importance"]["features"]} <= features
    assert manifest["evaluation"]["champion"]["roc"]  # v1 scored on the same rows
    out = json.loads(invoke("--json", "report", f"{MODEL}@2", "--out", str(tmp_path)))
    html = Path(out["path"]).read_text()
    for sid in ("curves", "confusion", "calibration", "importance"):
        assert f'id="{sid}"' in html
    assert 'aria-label="ROC curve: true positive rate against false positive rate"' in html
    assert "champion v1" in html  # the champion's curves drawn beside the candidate's
    assert f'<span class="count">{details["confusion"]["tp"]:,}</span>' in html
    top = details["importance"]["features"][0]["name"]
    assert f'data-name="{top}"' in html
