"""Where the chunks of an encode run: in this process one after another, or as Ray tasks.

Both runners take the same jobs (chunkwork.ChunkJob) and call the same functions on them
(chunkwork.train_chunk, chunkwork.finetune_chunk), with the same torch thread count a chunk,
so a parallel encode writes the same bytes as a serial one. Frames are read chunk by chunk
from the video and handed over as they are needed: at most one chunk a worker is in flight,
plus the one being read, so the encoding process holds a bounded number of chunks however
long the video is.

Ray is optional (`pip install 'dnerv-codec[ray]'`) and imported only by `RayRunner`. A task
whose worker dies (killed, out of memory, a lost node) is retried by Ray up to TASK_RETRIES
times; since a chunk's work is a pure function of its job and frames, the retry ends on the
same bytes (and continues from the chunk's checkpoint when there is one).
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable, Iterator

import numpy as np

from dnerv_codec.errors import DnervError, InputError

TASK_RETRIES = 3
RAY_INSTALL_HINT = "pip install 'dnerv-codec[ray]' (or pip install ray)"


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class SerialRunner:
    """The chunks one after another in this process, each with `threads` torch threads."""

    workers = 1

    def __init__(self, progress=None, log: Callable[[str], None] = lambda _: None):
        self.progress, self.log = progress, log

    def map(self, fn, jobs: list, frames: Iterable[np.ndarray], extra: list[tuple]) -> list:
        results = []
        for job, chunk, args in zip(jobs, frames, extra):
            if job.chunks > 1:
                self.log(f"{job.label}: frames {job.start}..{job.stop - 1}")
            results.append(fn(job, chunk, *args, progress=self.progress, log=self.log))
        return results

    def close(self) -> None:
        pass


class RayRunner:
    """The chunks as Ray tasks, one chunk a task: on a local Ray instance of `workers`
    processes (`address` None), or on the cluster at `address` ("auto": the one this machine
    belongs to). A task asks for `threads` CPUs, and for one GPU where the cluster has GPUs."""

    def __init__(self, workers: int | None, address: str | None, threads: int,
                 log: Callable[[str], None] = lambda _: None):
        try:
            import ray
        except ImportError:
            raise InputError(f"--workers and --ray need Ray, which is not installed: "
                             f"{RAY_INSTALL_HINT}") from None
        self.ray, self.log, self.threads = ray, log, threads
        self.started = not ray.is_initialized()
        if self.started:
            kwargs = dict(include_dashboard=False, log_to_driver=False,
                          logging_level=logging.ERROR, configure_logging=True)
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=workers * threads, num_gpus=0, **kwargs)
            except Exception as e:  # a wrong address, a cluster that does not answer
                raise InputError(f"cannot start or reach Ray"
                                 f"{' at ' + repr(address) if address else ''}: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                                 ) from None
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        self.workers = (self.gpus if self.gpus else max(1, cpus // threads)) if address else workers
        log(f"Ray: {self.workers} worker{'s' if self.workers > 1 else ''} "
            f"({cpus} CPUs, {self.gpus} GPUs{', ' + address if address else ''}), "
            f"{threads} thread{'s' if threads > 1 else ''} a chunk")

    def map(self, fn, jobs: list, frames: Iterable[np.ndarray], extra: list[tuple]) -> list:
        ray = self.ray
        task = ray.remote(fn).options(num_cpus=self.threads, num_gpus=1 if self.gpus else 0,
                                      max_retries=TASK_RETRIES, retry_exceptions=False)
        results: list = [None] * len(jobs)
        pending: dict = {}
        chunks: Iterator[np.ndarray] = iter(frames)
        try:
            for position, (job, args) in enumerate(zip(jobs, extra)):
                while len(pending) >= self.workers:
                    self._collect(pending, results)
                pending[task.remote(job, ray.put(next(chunks)), *args)] = (position, job)
            while pending:
                self._collect(pending, results)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return results

    def _collect(self, pending: dict, results: list) -> None:
        ray = self.ray
        done, _ = ray.wait(list(pending), num_returns=1)
        position, job = pending.pop(done[0])
        try:
            results[position] = ray.get(done[0])
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, DnervError):
                raise cause from None
            raise DnervError(f"{job.label or 'the chunk'} failed in its Ray worker: "
                             f"{type(cause).__name__ if cause else 'error'}: {cause}") from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
            raise DnervError(f"{job.label or 'the chunk'}: its Ray worker died "
                             f"{TASK_RETRIES + 1} times ({type(e).__name__})") from None
        self.log(f"{job.label}: done (frames {job.start}..{job.stop - 1})")

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
