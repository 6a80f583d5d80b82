"""Bounds on the live job streams: in all and per client address, freed when a stream ends."""

from __future__ import annotations

import pytest

from garden.api.followers import FollowerLimitError, Followers


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
