"""The storage client's HTTP session on Cloud Run and against the emulator."""

from __future__ import annotations

from warden.clients import Clients
from warden.settings import Settings


def test_the_storage_session_skips_environment_lookups_only_where_none_apply(
    gcs_emulator,
) -> None:
    """requests looks up proxies, netrc and a CA bundle in the environment on every request (a
    third of the storage client's CPU per call). Cloud Run has none and the emulator is on
    loopback, so there the session skips them; anywhere else (a laptop behind a proxy running
    the CLI) they still apply."""
    on_cloud_run = Settings.from_env({"K_SERVICE": "route-alerts", "WARDEN_PROJECT": "p"})
    in_a_job = Settings.from_env({"CLOUD_RUN_JOB": "retrain", "WARDEN_PROJECT": "p"})
    local = Settings.from_env({"STORAGE_EMULATOR_HOST": gcs_emulator.host})
    elsewhere = Settings.from_env({"WARDEN_PROJECT": "p"})
    assert on_cloud_run.serverless
    assert in_a_job.serverless
    assert not local.serverless
    assert not elsewhere.serverless
    # (the client library itself reads STORAGE_EMULATOR_HOST, set for the session: no
    # credentials are needed to build any of these)
    for settings, trusted in ((on_cloud_run, False), (local, False), (elsewhere, True)):
        assert Clients(settings).storage._http.trust_env is trusted


def test_sixteen_concurrent_requests_reuse_pooled_connections(
    gcs_emulator, bucket_names, caplog
) -> None:
    """The router serves 16 requests per instance (THREADS). requests pools 10 connections per
    host by default: urllib3 then opens a connection for each request over ten and drops it
    afterwards, logging "Connection pool is full". The storage session keeps enough."""
    import logging
    import threading

    from warden.store import gcs

    client = Clients(Settings.from_env({"STORAGE_EMULATOR_HOST": gcs_emulator.host})).storage
    bucket = client.bucket(bucket_names["registry"])
    gcs.create(bucket, "pool.json", b"{}", content_type=gcs.JSON_TYPE)
    start = threading.Barrier(16)
    failures: list[BaseException] = []

    def reads() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(25):
                assert gcs.read_json(bucket, "pool.json") is not None
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    threads = [threading.Thread(target=reads) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
