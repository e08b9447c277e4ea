"""The process pool the stream extracts in: results and errors come back, and a worker that dies fails only
the tasks it held and is replaced."""

import asyncio
import os
import signal

import pytest

from monitor.errors import FeedParseError, WorkerDiedError
from monitor.pool import ProcessPool


def echo(value: bytes, *, times: int = 1) -> bytes:
    return value * times


def fail(name: str) -> None:
    raise FeedParseError(name, "not a feed")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def pid() -> int:
    return os.getpid()


def test_results_and_errors_come_back_in_any_order():
    big = os.urandom(1_500_000)  # more than a pipe holds at once (1 MiB), both ways

    async def go():
        with ProcessPool(2) as pool:
            results = await asyncio.gather(*(pool.run(echo, big, times=2) for _ in range(6)))
            with pytest.raises(FeedParseError, match="feed-a: not a usable feed: not a feed") as caught:
                await pool.run(fail, "feed-a")
            return results, caught.value

    results, error = asyncio.run(go())
    assert results == [big * 2] * 6
    assert (error.url, error.kind) == ("feed-a", "parse")


def test_a_worker_that_dies_fails_its_task_and_is_replaced():
    async def go():
        with ProcessPool(2) as pool:
            before = set(pool.pids)
            with pytest.raises(WorkerDiedError, match=r"extraction worker \d+ died \(exit code -9\)"):
                await pool.run(die)
            answered = await asyncio.gather(*(pool.run(pid) for _ in range(4)))
            return before, set(pool.pids), set(answered)

    before, after, answered = asyncio.run(go())
    assert len(before & after) == 1 and len(after) == 2  # one replaced, one kept
    assert answered <= after


def test_a_pool_outlives_the_event_loop_that_used_it():
    with ProcessPool(1) as pool:
        first = asyncio.run(pool.run(pid))
        assert asyncio.run(pool.run(echo, b"x", times=3)) == b"xxx"
        assert pool.pids == [first]
