"""The Pub/Sub emulator's JVM starts from a class-data-sharing archive it wrote itself, and a
damaged archive never stops an emulator from starting."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden_local.pubsub import PubSubEmulator, class_archive


def _round_trip(emulator: PubSubEmulator) -> None:
    """A topic created and a message published: the emulator works, whatever its JVM mapped."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = grpc.insecure_channel(emulator.host)  # as the client does for an emulator
    publisher = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))
    topic = publisher.create_topic(
        name=publisher.topic_path("cds-test", "cds-topic"), timeout=30
    ).name
    assert publisher.publish(topic, b"x").result(timeout=30)
    channel.close()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[str, bool]]:
    """An emulator started with no archive in its cache, run and stopped; what it showed while
    it ran (its class sharing, whether the archive existed yet). Module-wide: writing costs a
    JVM two seconds of CPU, and the next test needs a written archive to damage."""
    cache = tmp_path_factory.mktemp("cds")
    emulator = PubSubEmulator(cache=cache)
    with emulator:
        seen = (emulator.class_sharing, class_archive(cache).exists())
    return cache, seen


def test_the_first_run_writes_the_archive_and_later_runs_start_from_it(
    first_run: tuple[Path, tuple[str, bool]],
) -> None:
    cache, (sharing, existed) = first_run
    assert sharing == "writing"
    assert not existed  # written as the JVM exits, then moved into place
    assert class_archive(cache).stat().st_size > 1_000_000
    second = PubSubEmulator(cache=cache)
    with second:
        assert second.class_sharing == "used"
        _round_trip(second)
    assert not list(cache.glob("*.tmp"))


def test_a_damaged_archive_is_dropped_and_the_emulator_starts_anyway(
    first_run: tuple[Path, tuple[str, bool]], tmp_path: Path
) -> None:
    archive = class_archive(tmp_path)
    whole = class_archive(first_run[0]).read_bytes()  # an archive an emulator wrote
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(whole[: len(whole) // 20])  # truncated: the JVM would die mapping it
    emulator = PubSubEmulator(cache=tmp_path)
    with emulator:
        assert emulator.class_sharing == "writing"  # started without it, writes a new one
        _round_trip(emulator)
    assert archive.stat().st_size > len(whole) // 2  # a whole new archive, in use next time
    assert not list(Path.cwd().glob("hs_err_pid*.log"))  # the crash report is kept aside
    again = PubSubEmulator(cache=tmp_path)
    with again:
        assert again.class_sharing == "used"
        _round_trip(again)


def test_an_archive_cut_short_by_a_kill_is_never_kept(tmp_path: Path) -> None:
    archive = class_archive(tmp_path)
    emulator = PubSubEmulator(cache=tmp_path).start()
    emulator.kill()  # SIGKILL: no clean exit, so no complete archive
    emulator.stop()
    assert not archive.exists()
    assert not list(tmp_path.glob("*.tmp"))
    assert not list(tmp_path.glob("*.lock"))  # the next emulator may write it


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    """Emulators started while another one is writing the archive start as before: writing
    costs a JVM a second at exit, so only one pays it."""
    writer = PubSubEmulator(cache=tmp_path).start()
    try:
        other = PubSubEmulator(cache=tmp_path)
        with other:
            assert writer.class_sharing == "writing"
            assert other.class_sharing == ""
            _round_trip(other)
    finally:
        writer.stop()
    assert class_archive(tmp_path).stat().st_size > 1_000_000
    assert not list(tmp_path.glob("*.lock"))
