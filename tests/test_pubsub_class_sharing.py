"""The Pub/Sub emulator's JVM starts from a class-data-sharing archive it wrote itself, and a
damaged archive never stops an emulator from starting."""

from __future__ import annotations

from pathlib import Path

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


def test_the_first_run_writes_the_archive_and_later_runs_start_from_it(tmp_path: Path) -> None:
    archive = class_archive(tmp_path)
    first = PubSubEmulator(cache=tmp_path)
    with first:
        assert first.class_sharing == "writing"
        assert not archive.exists()  # written as the JVM exits, then moved into place
    assert archive.stat().st_size > 1_000_000
    second = PubSubEmulator(cache=tmp_path)
    with second:
        assert second.class_sharing == "used"
        _round_trip(second)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_damaged_archive_is_dropped_and_the_emulator_starts_anyway(tmp_path: Path) -> None:
    archive = class_archive(tmp_path)
    with PubSubEmulator(cache=tmp_path):
        pass
    whole = archive.read_bytes()
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
