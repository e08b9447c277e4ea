"""Worker processes for the stream's CPU work (page extraction, feed parsing), driven from the event loop.

Each worker reads tasks (an id, a function and its arguments, pickled) from one pipe and writes each result
or exception to another; the event loop writes and reads those pipes itself, as it does sockets.
ProcessPoolExecutor handed each task over through two threads of the daemon (its queue feeder and its result
manager) and woke the loop from a third: about twice the daemon's CPU a task (see docs/design.md).

A worker that dies (a crash in a C extension, the OOM killer) fails the tasks it held with
``WorkerDiedError`` and is replaced at the next task; the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import pickle
import struct
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from monitor.errors import WorkerDiedError

T = TypeVar("T")

#: the frame header multiprocessing's Connection.send_bytes writes, which the workers use
_HEADER = struct.Struct("!i")
#: how much a pipe holds (Linux): a whole page, so that a worker reads its next task without waiting for the
#: loop to write the rest of it
PIPE_BYTES = 1 << 20
#: how long a worker has to exit once its task pipe is closed, before it is killed
STOP_SECONDS = 5.0


def _serve(tasks: Connection, results: Connection) -> None:
    """A worker: run each task it is sent, answer with (id, True, result) or (id, False, exception), until
    its task pipe closes."""
    fd, header, buffer = tasks.fileno(), bytearray(_HEADER.size), bytearray(PIPE_BYTES)
    while True:
        try:
            task, function, args, kwargs = pickle.loads(_read_frame(fd, header, buffer))
        except EOFError:
            return
        try:
            answer = pickle.dumps((task, True, function(*args, **kwargs)), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the task's failure (or its unpicklable result) is its answer
            try:
                answer = pickle.dumps((task, False, exc), pickle.HIGHEST_PROTOCOL)
            except Exception:
                answer = pickle.dumps((task, False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        results.send_bytes(answer)


def _read_frame(fd: int, header: bytearray, buffer: bytearray) -> memoryview:
    """The next frame from a blocking pipe, read into ``buffer`` (grown for a larger frame): os.read would
    allocate, and for a page-sized frame map and unmap, a new buffer each time."""
    (size,) = _HEADER.unpack(_read_exactly(fd, memoryview(header)))
    if size > len(buffer):
        buffer.extend(bytes(size - len(buffer)))
    return _read_exactly(fd, memoryview(buffer)[:size])


def _read_exactly(fd: int, view: memoryview) -> memoryview:
    done = 0
    while done < len(view):
        n = os.readv(fd, [view[done:]])
        if n == 0:
            raise EOFError
        done += n
    return view


class _Worker:
    """One worker process, its two pipes (read and written by the loop without blocking), and the futures
    of the tasks it holds."""

    def __init__(self) -> None:
        context = get_context("spawn")  # no worker inherits the daemon's threads, sockets or connections
        task_reader, task_writer = context.Pipe(duplex=False)
        answer_reader, answer_writer = context.Pipe(duplex=False)
        self.process: BaseProcess = context.Process(
            target=_serve, args=(task_reader, answer_writer), name="monitor-worker", daemon=True
        )
        self.process.start()
        task_reader.close()
        answer_writer.close()
        self._pipes = (task_writer, answer_reader)  # they own the descriptors
        self._task_fd, self._answer_fd = task_writer.fileno(), answer_reader.fileno()
        for fd in (self._task_fd, self._answer_fd):
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError, AttributeError):  # Linux only; the default 64 KiB still works
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.alive = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox = bytearray()  # tasks not yet taken by the pipe
        self._inbox = bytearray()  # the start of an answer not complete yet
        self._read_buffer = memoryview(bytearray(PIPE_BYTES))

    def attached_to(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self._loop is loop

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read and write the pipes from ``loop`` (a new loop takes them over from one that ended)."""
        if self._loop is loop:
            return
        self._detach()
        loop.add_reader(self._answer_fd, self._read)
        self._loop = loop

    def _detach(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._answer_fd)
            self._loop.remove_writer(self._task_fd)
        self._loop = None
        self._outbox.clear()
        self._inbox.clear()

    def send(self, task: int, payload: bytes, future: asyncio.Future[Any]) -> None:
        self.pending[task] = future
        header = _HEADER.pack(len(payload))
        if self._outbox:  # the pipe is full: queue behind what waits
            self._outbox += header
            self._outbox += payload
            return
        try:  # straight into the pipe; only what it did not take is copied to the outbox
            written = os.writev(self._task_fd, (header, payload))
        except BlockingIOError:
            written = 0
        except OSError:  # the worker is gone; its answer pipe says so too
            return
        if written < len(header):
            self._outbox += header[written:]
            self._outbox += payload
        else:
            self._outbox += memoryview(payload)[written - len(header) :]
        if self._outbox:
            self._write()

    def _write(self) -> None:
        assert self._loop is not None
        try:
            while self._outbox:
                del self._outbox[: os.write(self._task_fd, self._outbox)]
        except BlockingIOError:  # the pipe is full: go on when the worker has read some
            self._loop.add_writer(self._task_fd, self._write)
            return
        except OSError:  # the worker is gone; its answer pipe says so too
            self._outbox.clear()
        self._loop.remove_writer(self._task_fd)

    def _read(self) -> None:
        try:
            got = os.readv(self._answer_fd, [self._read_buffer])
        except BlockingIOError:
            return
        except OSError:
            got = 0
        if not got:
            self._lost()
            return
        self._inbox += self._read_buffer[:got]
        while len(self._inbox) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._inbox)
            if len(self._inbox) < _HEADER.size + size:
                return
            task, ok, value = pickle.loads(memoryview(self._inbox)[_HEADER.size : _HEADER.size + size])
            del self._inbox[: _HEADER.size + size]
            future = self.pending.pop(task, None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _lost(self) -> None:
        """The answer pipe closed: the process ended; fail what it held."""
        self._detach()
        self.alive = False
        self.process.join(STOP_SECONDS)
        code = self.process.exitcode
        for future in self.pending.values():
            if not future.done():
                future.set_exception(
                    WorkerDiedError(f"extraction worker {self.process.pid} died (exit code {code})")
                )
        self.pending.clear()

    def stop(self) -> None:
        self._detach()
        for pipe in self._pipes:
            pipe.close()
        self.process.join(STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class ProcessPool:
    """``size`` worker processes; ``await pool.run(function, *args, **kwargs)`` runs a module-level
    function in the least busy one. Use as ``with ProcessPool(2) as pool:``; the loop that calls ``run``
    reads and writes the workers' pipes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._workers = [_Worker() for _ in range(size)]
        self._ids = itertools.count()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        for i, worker in enumerate(self._workers):
            # a worker left holding tasks by a loop that ended may be part-way through an answer
            if not worker.alive or (worker.pending and not worker.attached_to(loop)):
                worker.stop()
                self._workers[i] = _Worker()
        worker = min(self._workers, key=lambda w: len(w.pending))
        worker.attach(loop)
        task, future = next(self._ids), loop.create_future()
        worker.send(task, pickle.dumps((task, function, args, kwargs), pickle.HIGHEST_PROTOCOL), future)
        result: T = await future
        return result

    def close(self) -> None:
        """Stop every worker: each finishes its task in hand and exits (killed after STOP_SECONDS)."""
        for worker in self._workers:
            worker.stop()

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
