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
