"""The GCS registry on a real fake-gcs-server: claims, immutability, CAS, history, integrity."""

from __future__ import annotations

import io
import itertools
import json
import threading

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from warden.errors import ConflictError, IntegrityError, VersionNotFound
from warden.store.registry import ARTIFACT, Registry, parse_ref


def _artifact(scale: float = 1.0) -> bytes:
    X = load_iris().data * scale
    buf = io.BytesIO()
    joblib.dump(StandardScaler().fit(X), buf)
    return buf.getvalue()


@pytest.fixture
def registry(storage_client, bucket_names) -> Registry:
    return Registry(storage_client, bucket_names["registry"])


def _register(registry: Registry, model: str = "m", scale: float = 1.0) -> int:
    version = registry.claim_version(model, run_id="test")
    registry.register(
        model,
        version,
        {ARTIFACT: _artifact(scale), "profile.json": b"{}"},
        {"task": "clustering", "features": ["a"]},
    )
    return version


def test_versions_are_claimed_uniquely_under_concurrency(registry: Registry) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def claim() -> None:
        v = registry.claim_version("m", run_id=threading.current_thread().name)
        with lock:
            got.append(v)

    threads = [threading.Thread(target=claim) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 13))


def test_a_version_without_manifest_is_invisible(registry: Registry, storage_client) -> None:
    v1 = _register(registry)
    v2 = registry.claim_version("m", run_id="crashed")  # claimed, files never completed
    registry.bucket.blob(f"m/versions/{v2:06d}/{ARTIFACT}").upload_from_string(b"partial")
    assert registry.version_numbers("m") == [v1]
    assert [m["version"] for m in registry.versions("m")] == [v1]
    with pytest.raises(VersionNotFound, match="never completed"):
        registry.manifest("m", v2)
    # The crashed number is never reused.
    assert registry.claim_version("m", run_id="next") == v2 + 1


def test_manifest_records_sha256_of_each_file_and_files_are_immutable(registry: Registry) -> None:
    v = _register(registry)
    manifest = registry.manifest("m", v)
    assert set(manifest["files"]) == {ARTIFACT, "profile.json"}
    data = registry.bucket.blob(f"m/versions/{v:06d}/{ARTIFACT}").download_as_bytes()
    import hashlib

    assert manifest["files"][ARTIFACT]["sha256"] == hashlib.sha256(data).hexdigest()
    with pytest.raises(ConflictError, match="immutable"):
        registry.register("m", v, {ARTIFACT: b"other"}, {})


def test_manifest_records_generation_and_checksums_as_storage_reports_them(
    registry: Registry,
) -> None:
    import base64
    import hashlib

    import google_crc32c

    v = _register(registry)
    manifest = registry.manifest("m", v)
    for name, record in manifest["files"].items():
        blob = registry.bucket.get_blob(f"m/versions/{v:06d}/{name}")
        data = blob.download_as_bytes()
        assert record["generation"] == blob.generation
        assert record["size"] == blob.size == len(data)
        crc32c = google_crc32c.Checksum(data).digest()
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        assert record["crc32c"] == blob.crc32c == base64.b64encode(crc32c).decode()
        assert record["md5"] == blob.md5_hash == base64.b64encode(md5).decode()
    check = registry.check_stored("m", v)
    assert check.ok, check.detail
    assert check.sha256 is None  # nothing was downloaded
    assert registry.check_stored("m", v, manifest) == check
    forged = {**manifest, "files": {ARTIFACT: {**manifest["files"][ARTIFACT], "md5": "AAAA"}}}
    assert not registry.check_stored("m", v, forged).ok


def test_tampered_artifact_is_refused_before_unpickling(registry: Registry) -> None:
    v = _register(registry)
    estimator, _ = registry.load("m", v)
    assert estimator.mean_.shape == (4,)
    evil = registry.bucket.blob(f"m/versions/{v:06d}/{ARTIFACT}")
    evil.upload_from_string(_artifact(scale=2.0))  # a valid pickle, but not the registered one
    check = registry.verify("m", v)
    assert not check.ok
    assert "does not match the manifest" in check.detail
    with pytest.raises(IntegrityError, match="refusing to use it"):
        registry.load("m", v)


def test_promote_rollback_and_history(registry: Registry) -> None:
    v1, v2, v3 = (_register(registry, scale=s) for s in (1.0, 2.0, 3.0))
    assert registry.alias("m") is None
    registry.promote("m", v1, reason="first", actor="t")
    registry.promote("m", v2, reason="better", actor="t")
    registry.promote("m", v3, reason="better still", actor="t")
    assert registry.resolve("m", "champion") == v3
    back = registry.rollback("m", reason="bad predictions", actor="oncall")
    assert back.version == v2
    assert back.previous_version == v3
    to_one = registry.rollback("m", to=v1, actor="oncall")
    assert to_one.version == v1
    history = registry.history("m")
    assert [(h.action, h.version) for h in history] == [
        ("promote", v1),
        ("promote", v2),
        ("promote", v3),
        ("rollback", v2),
        ("rollback", v1),
    ]
    assert [h.seq for h in history] == [1, 2, 3, 4, 5]
    assert history[3].reason == "bad predictions"


def test_promote_is_idempotent_and_conditional(registry: Registry) -> None:
    v1, v2 = _register(registry), _register(registry, scale=2.0)
    registry.promote("m", v1, reason="r", actor="t")
    again = registry.promote("m", v1, reason="r", actor="t")
    assert again is not None
    assert again.seq == 1
    # A run that compared against "no champion" must not replace v1.
    assert registry.promote("m", v2, reason="r", actor="t", only_if_current=None) is None
    assert registry.resolve("m") == v1
    assert len(registry.history("m")) == 1


def test_rollback_without_previous_or_champion_is_a_clear_error(registry: Registry) -> None:
    v1 = _register(registry)
    with pytest.raises(VersionNotFound, match="no champion to roll back"):
        registry.rollback("m", actor="t")
    registry.promote("m", v1, reason="r", actor="t")
    with pytest.raises(VersionNotFound, match="no previous champion"):
        registry.rollback("m", actor="t")
    with pytest.raises(VersionNotFound):
        registry.rollback("m", to=99, actor="t")


def test_promoting_a_tampered_version_is_refused(registry: Registry) -> None:
    v1 = _register(registry)
    registry.bucket.blob(f"m/versions/{v1:06d}/{ARTIFACT}").upload_from_string(b"junk")
    with pytest.raises(IntegrityError):
        registry.promote("m", v1, reason="r", actor="t")
    assert registry.alias("m") is None


def test_concurrent_alias_moves_never_tear_or_lose_history(registry: Registry) -> None:
    versions = [_register(registry, scale=1.0 + i) for i in range(8)]
    errors: list[BaseException] = []

    def promote(v: int) -> None:
        try:
            registry.promote("m", v, reason=f"race {v}", actor="t")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = registry.history("m")
    # Every promote landed exactly once, in one unbroken chain.
    assert sorted(h.version for h in history) == versions
    assert [h.seq for h in history] == list(range(1, len(versions) + 1))
    for before, after in itertools.pairwise(history):
        assert after.previous_version == before.version
    state = registry.alias("m")
    assert state is not None
    assert state.version == history[-1].version
    raw = json.loads(registry.bucket.blob("m/aliases/champion.json").download_as_bytes())
    assert raw["version"] == state.version
    assert raw["seq"] == len(versions)


def test_history_survives_a_crash_between_alias_write_and_history_write(
    registry: Registry,
) -> None:
    v1, v2 = _register(registry), _register(registry, scale=2.0)
    registry.promote("m", v1, reason="r", actor="t")
    # Simulate a crash after the CAS: move the alias by hand without the history object.
    alias = registry.alias("m")
    assert alias is not None
    crashed = {**alias.to_json(), "version": v2, "previous_version": v1, "seq": 2}
    registry.bucket.blob("m/aliases/champion.json").upload_from_string(
        json.dumps(crashed), if_generation_match=alias.generation
    )
    assert [h.version for h in registry.history("m")] == [v1, v2]  # reconstructed on read
    registry.rollback("m", actor="t")  # the next mover writes the missing entry for good
    names = sorted(
        b.name
        for b in registry._client.list_blobs(registry.bucket_name, prefix="m/aliases/history/")
    )
    assert [n.rsplit("/", 1)[-1] for n in names] == [
        "00000001.json",
        "00000002.json",
        "00000003.json",
    ]


def test_parse_ref() -> None:
    assert parse_ref(None) == "champion"
    assert parse_ref("v12") == 12
    assert parse_ref("7") == 7
    assert parse_ref("latest") == "latest"
    with pytest.raises(VersionNotFound, match="not a version or alias"):
        parse_ref("best")


def test_models_lists_every_model_folder(registry: Registry) -> None:
    _register(registry, "alpha")
    _register(registry, "beta")
    assert registry.models() == ["alpha", "beta"]
