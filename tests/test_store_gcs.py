"""The one storage helper (warden.store.gcs) on a real fake-gcs-server: reads with generations,
create-only and compare-and-swap writes, the CAS loop, owner read-back after a 412, conditional
deletes — and that no other module writes or deletes conditionally by hand."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from warden.errors import ConflictError, IntegrityError
from warden.store import gcs

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared/warden"
FAST = gcs.Backoff(base=0.001, cap=0.01)


@pytest.fixture
def bucket(storage_client, bucket_names) -> storage.Bucket:
    return storage_client.bucket(bucket_names["registry"])


def _content(bucket: storage.Bucket, name: str) -> Any:
    return json.loads(bucket.blob(name).download_as_bytes())


# -- reads -------------------------------------------------------------------------------------
def test_reading_a_missing_object_gives_none(bucket) -> None:
    assert gcs.read_json(bucket, "nope.json") is None
    assert gcs.read_bytes(bucket, "nope.bin") is None


def test_reads_return_the_content_with_its_generation(bucket) -> None:
    written = gcs.create(bucket, "a.json", gcs.dumps({"x": 1}), content_type=gcs.JSON_TYPE)
    assert written is not None
    assert gcs.read_json(bucket, "a.json") == gcs.Stored({"x": 1}, written.generation)
    assert gcs.read_bytes(bucket, "a.json") == gcs.Stored(b'{"x": 1}', written.generation)


def test_json_that_does_not_parse_is_an_integrity_error(bucket) -> None:
    bucket.blob("bad.json").upload_from_string(b"{not json")
    with pytest.raises(IntegrityError, match=r"bad\.json: not valid JSON"):
        gcs.read_json(bucket, "bad.json")


# -- create-only --------------------------------------------------------------------------------
def test_create_only_second_writer_is_not_the_owner(bucket) -> None:
    first = gcs.create(bucket, "claim.json", b'{"run": 1}', content_type=gcs.JSON_TYPE)
    assert first is not None
    assert first.generation > 0
    assert not first.recovered
    assert gcs.create(bucket, "claim.json", b'{"run": 2}', content_type=gcs.JSON_TYPE) is None
    # The same bytes by another writer are still not ours.
    assert gcs.create(bucket, "claim.json", b'{"run": 1}', content_type=gcs.JSON_TYPE) is None
    assert _content(bucket, "claim.json") == {"run": 1}
    stored = bucket.get_blob("claim.json")
    assert stored.metadata == {gcs.OWNER_KEY: first.owner}
    assert stored.generation == first.generation


def test_own_write_retried_is_recognised_as_mine(bucket) -> None:
    """A 412 whose object carries our token and bytes is our own earlier write."""
    first = gcs.create(bucket, "v/model.bin", b"artifact", owner="T")
    assert first is not None
    again = gcs.create(bucket, "v/model.bin", b"artifact", owner="T")
    assert again == gcs.Written(first.generation, "T", recovered=True)
    assert gcs.create(bucket, "v/model.bin", b"artifact", owner="U") is None
    assert gcs.create(bucket, "v/model.bin", b"other bytes", owner="T") is None


class LoseFirstUploadResponse(requests.Session):
    """The first upload reaches the server, but its response is lost (a connection reset):
    google-cloud-storage retries it, with the same precondition."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        if method.upper() == "POST" and "/upload/" in url:
            self.uploads += 1
            if self.uploads == 1:
                raise requests.exceptions.ConnectionError("connection reset by peer")
        return response


@pytest.fixture
def lossy(bucket_names) -> tuple[storage.Bucket, LoseFirstUploadResponse]:
    session = LoseFirstUploadResponse()
    client = storage.Client(
        project="warden-test", credentials=AnonymousCredentials(), _http=session
    )
    return client.bucket(bucket_names["registry"]), session


def test_a_create_retried_by_the_client_library_is_ours(lossy, bucket) -> None:
    lossy_bucket, session = lossy
    written = gcs.create(lossy_bucket, "claim.json", b"{}", content_type=gcs.JSON_TYPE)
    assert session.uploads == 2  # the library retried; the retry got a 412
    assert written is not None
    assert written.recovered
    assert written.generation == bucket.get_blob("claim.json").generation


def test_a_cas_retried_by_the_client_library_is_ours(lossy, bucket) -> None:
    lossy_bucket, session = lossy
    first = gcs.create(bucket, "alias.json", b'{"v": 1}')
    assert first is not None
    written = gcs.write_if(lossy_bucket, "alias.json", b'{"v": 2}', generation=first.generation)
    assert session.uploads == 2
    assert written is not None
    assert written.recovered
    assert written.generation != first.generation
    assert gcs.read_bytes(bucket, "alias.json") == gcs.Stored(b'{"v": 2}', written.generation)


# -- compare-and-swap ---------------------------------------------------------------------------
def test_cas_succeeds_at_the_generation_read_and_loses_a_race(bucket) -> None:
    first = gcs.create(bucket, "alias.json", gcs.dumps({"v": 1}))
    assert first is not None
    second = gcs.write_if(bucket, "alias.json", gcs.dumps({"v": 2}), generation=first.generation)
    assert second is not None
    assert second.generation != first.generation
    # A writer still holding the first generation lost the race: nothing is overwritten.
    late = gcs.write_if(bucket, "alias.json", gcs.dumps({"v": 3}), generation=first.generation)
    assert late is None
    assert gcs.read_json(bucket, "alias.json") == gcs.Stored({"v": 2}, second.generation)


def test_cas_loop_rereads_after_a_concurrent_write(bucket) -> None:
    gcs.create(bucket, "n.json", gcs.dumps({"n": 0}))
    seen: list[int] = []

    def increment(stored: gcs.Stored[Any] | None) -> dict[str, int]:
        assert stored is not None
        seen.append(stored.data["n"])
        if len(seen) == 1:  # a rival writes between our read and our write
            rival = gcs.read_json(bucket, "n.json")
            assert gcs.write_if(
                bucket, "n.json", gcs.dumps({"n": rival.data["n"] + 1}), generation=rival.generation
            )
        return {"n": stored.data["n"] + 1}

    got = gcs.update_json(bucket, "n.json", increment, policy=FAST)
    assert seen == [0, 1]  # lost once, then re-read the rival's state
    assert got.data == {"n": 2}
    assert got.written is not None
    assert gcs.read_json(bucket, "n.json") == gcs.Stored({"n": 2}, got.generation)


def test_cas_loop_under_concurrent_writers_loses_no_update(storage_client, bucket_names) -> None:
    name, threads, each = "counter.json", 4, 5
    errors: list[BaseException] = []

    def worker() -> None:
        own = storage.Client(project="warden-test").bucket(bucket_names["registry"])
        try:
            for _ in range(each):
                gcs.update_json(
                    own,
                    name,
                    lambda s: {"n": (s.data["n"] if s else 0) + 1},
                    attempts=100,
                    policy=FAST,
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert _content(storage_client.bucket(bucket_names["registry"]), name) == {"n": threads * each}


def test_cas_loop_creates_a_missing_object_and_can_decline_to_write(bucket) -> None:
    created = gcs.update_json(bucket, "new.json", lambda s: {"made": s is None})
    assert created.data == {"made": True}
    assert created.written is not None
    kept = gcs.update_json(bucket, "new.json", lambda s: None)
    assert kept == gcs.Updated({"made": True}, created.generation, None)
    missing = gcs.update_json(bucket, "absent.json", lambda s: None)
    assert missing == gcs.Updated(None, 0, None)
    assert gcs.read_json(bucket, "absent.json") is None


def test_cas_loop_gives_up_with_conflict_error(bucket) -> None:
    gcs.create(bucket, "hot.json", gcs.dumps({"n": 0}))
    calls = []

    def always_beaten(stored: gcs.Stored[Any] | None) -> dict[str, int]:
        assert stored is not None
        calls.append(stored.generation)
        bucket.blob("hot.json").upload_from_string(gcs.dumps({"n": -len(calls)}))  # a rival
        return {"n": stored.data["n"] + 1}

    with pytest.raises(ConflictError, match=r"hot\.json: lost 3 races"):
        gcs.update_json(bucket, "hot.json", always_beaten, attempts=3, policy=FAST)
    assert len(calls) == 3
    with pytest.raises(ConflictError, match="kept changing"):
        gcs.update_json(
            bucket, "hot.json", always_beaten, attempts=1, policy=FAST, conflict="kept changing"
        )


def test_change_gets_a_copy_and_start_skips_the_first_read(bucket) -> None:
    first = gcs.create(bucket, "s.json", gcs.dumps({"items": [1]}))
    assert first is not None
    start = gcs.Stored({"items": [1]}, first.generation)

    def append(stored: gcs.Stored[Any] | None) -> dict[str, Any]:
        assert stored is not None
        stored.data["items"].append(2)
        return stored.data

    got = gcs.update_json(bucket, "s.json", append, start=start)
    assert got.data == {"items": [1, 2]}
    assert start.data == {"items": [1]}  # the caller's state is left alone
    # A stale start loses its first race, then reads the object as it is.
    stale = gcs.update_json(bucket, "s.json", append, start=start, policy=FAST)
    assert stale.data == {"items": [1, 2, 2]}


# -- conditional delete ----------------------------------------------------------------------------
class EnforceDeletePreconditions(requests.Session):
    """fake-gcs-server deletes whatever generation a DELETE names (it ignores
    ``ifGenerationMatch``); this session answers such a DELETE the way Cloud Storage does — 412
    when the object's generation differs — and records the DELETEs it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[str] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if method.upper() == "DELETE":
            self.deletes.append(url)
            parts = urlsplit(url)
            want = parse_qs(parts.query).get("ifGenerationMatch")
            head = super().request("GET", urlunsplit(parts._replace(query="")))
            if want and head.status_code == 200 and head.json()["generation"] != want[0]:
                refused = requests.Response()
                refused.status_code = 412
                refused._content = b'{"error": {"code": 412, "message": "Precondition Failed"}}'
                refused.headers["Content-Type"] = "application/json"
                refused.url, refused.request = url, requests.Request(method, url).prepare()
                return refused
        return super().request(method, url, *args, **kwargs)


def test_conditional_delete(bucket_names) -> None:
    session = EnforceDeletePreconditions()
    client = storage.Client(
        project="warden-test", credentials=AnonymousCredentials(), _http=session
    )
    bucket = client.bucket(bucket_names["registry"])
    first = gcs.create(bucket, "old.json", b"1")
    assert first is not None
    second = gcs.write_if(bucket, "old.json", b"2", generation=first.generation)
    assert second is not None
    assert gcs.delete_if(bucket, "old.json", first.generation) is False  # replaced: left alone
    assert gcs.read_bytes(bucket, "old.json") == gcs.Stored(b"2", second.generation)
    assert gcs.delete_if(bucket, "old.json", second.generation) is True
    assert gcs.read_bytes(bucket, "old.json") is None
    assert gcs.delete_if(bucket, "old.json", second.generation) is False  # gone
    # Every delete named the generation it was allowed to remove.
    assert [parse_qs(urlsplit(u).query)["ifGenerationMatch"] for u in session.deletes] == [
        [str(first.generation)],
        [str(second.generation)],
        [str(second.generation)],
    ]


# -- the policy ------------------------------------------------------------------------------------
def test_backoff_is_bounded_exponential_with_jitter() -> None:
    policy = gcs.Backoff(base=0.01, cap=0.05, attempts=7)
    for retry in range(10):
        for _ in range(20):
            assert 0.0 <= policy.delay(retry) <= min(0.05, 0.01 * 2**retry)
    assert gcs.BACKOFF.attempts > 1


# -- one helper ------------------------------------------------------------------------------------
def test_only_the_helper_writes_or_deletes_conditionally() -> None:
    """No module but store/gcs.py passes ``if_generation_match`` (uploads or deletes by hand)."""
    helper = PACKAGE / "store" / "gcs.py"
    offenders = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path != helper and "if_generation_match" in path.read_text()
    )
    assert offenders == []
    assert "if_generation_match" in helper.read_text()
