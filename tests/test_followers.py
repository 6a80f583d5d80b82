"""Bounds on the live job streams: in all and per client address, freed when a stream ends."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import Clock

from garden.api.followers import FollowerLimitError, Followers
from garden.api.shared_reads import SharedReads


def test_followers_are_bounded_per_client_then_in_all() -> None:
    followers = Followers(max_total=3, max_per_client=2)
    with followers.slot("10.0.0.1"), followers.slot("10.0.0.1"):
        too_many = pytest.raises(FollowerLimitError, match=r"already follows 2 jobs live \(at most")
        with too_many, followers.slot("10.0.0.1"):
            pass
        with followers.slot("10.0.0.2"):
            assert followers.total == 3
            with (
                pytest.raises(
                    FollowerLimitError, match="already streams 3 live job follows"
                ) as full,
                followers.slot("10.0.0.3"),
            ):
                pass
            assert "\n" not in str(full.value) and "GET /api/v1/training/jobs/" in str(full.value)
        assert followers.open_from("10.0.0.2") == 0
    assert followers.total == 0


def test_a_stream_that_fails_frees_its_place() -> None:
    followers = Followers(max_total=1, max_per_client=1)
    with pytest.raises(ConnectionError), followers.slot("10.0.0.1"):
        raise ConnectionError("the client left")
    with followers.slot("10.0.0.1"):
        assert followers.total == 1


def test_streams_of_one_job_share_its_reads() -> None:
    """Eight streams asking at once make one read; a read older than the interval is made
    again; each job has reads of its own."""
    clock = Clock(now=0.0)
    started = threading.Event()
    reads: list[str] = []

    def read(job_id: str) -> str:
        reads.append(job_id)
        started.set()
        time.sleep(0.2)  # a slow database: the other streams ask while this read runs
        return f"{job_id} at {clock.now}"

    shared = SharedReads(read, max_age_s=0.5, clock=clock)
    answers: list[str] = []
    streams = [threading.Thread(target=lambda: answers.append(shared.get("job-1")))]
    streams[0].start()
    started.wait(5)
    for _ in range(7):
        stream = threading.Thread(target=lambda: answers.append(shared.get("job-1")))
        stream.start()
        streams.append(stream)
    for stream in streams:
        stream.join(5)
    assert answers == ["job-1 at 0.0"] * 8 and reads == ["job-1"]

    clock.now = 0.4
    assert shared.get("job-1") == "job-1 at 0.0" and shared.get("job-2") == "job-2 at 0.4"
    clock.now = 0.6
    assert shared.get("job-1") == "job-1 at 0.6"
    assert reads == ["job-1", "job-2", "job-1"] and shared.reads == 3
