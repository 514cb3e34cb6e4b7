"""Sampling runs of the app, one at a time, each with the events the page streams.

A job runs ``MaskGen.generate`` (or ``inpainting.inpaint``) in a worker thread; its
``on_step`` turns each step's state into a frame event (the token grid and the decoded
image, ``frames.py``), which any number of readers receive in order, from the first, as
Server-Sent Events. The loop calls ``on_step`` only on steps that had masked tokens left, so
when a fill rule reveals everything early the remaining steps are reported as frames of the
unchanged state: the page and the GIF always have one frame per step.

A run is work for whoever watches it: its readers are the event streams open on it. A run
that no stream has claimed ``claim`` seconds after it was submitted, or whose last stream
closed more than ``grace`` seconds ago, is abandoned, and so is every run when the app
stops: it is cancelled before it starts, or between two steps (``Job.check``, called from
``on_step``), and ends with a ``cancelled`` event instead of ``done``. At most
``MAX_PENDING`` runs wait or run at a time; another is refused (HTTP 503) until one ends.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np
from torch import Tensor

from ..errors import MaskgenError
from . import frames
from .body import Limits, RequestError

KEEP_JOBS = 8  # finished jobs whose frames and GIF stay available
MAX_PENDING = 8  # runs queued or running at once: one sampling worker, so more only wait


class Cancelled(Exception):
    """Raised inside a run, between two steps, once nobody waits for it."""


class Job:
    """One sampling run: its events (``step``, then ``done``, ``failed`` or ``cancelled``),
    its GIF frames, and its ``state``: queued, running, done, failed or cancelled."""

    def __init__(self, steps: int, limits: Limits = Limits()):
        self.id = uuid.uuid4().hex[:12]
        self.steps = steps
        self.events: list[tuple[str, str]] = []
        self.gif_frames: list = []
        self.finished = False
        self.state = "queued"
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._cond = threading.Condition()
        self._limits = limits
        self._readers, self._claimed = 0, False
        self._alone_since = time.monotonic()  # when the last reader left (or the run was made)
        self._cancel: str | None = None  # why the run is to stop

    def attach(self) -> None:
        """An event stream opened on the run: it has someone waiting for it."""
        with self._cond:
            self._readers += 1
            self._claimed = True

    def detach(self) -> None:
        """An event stream on the run closed (its page went away, or the run ended)."""
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._alone_since = time.monotonic()

    def cancel(self, reason: str) -> None:
        """Stop the run before it starts or at its next step."""
        with self._cond:
            self._cancel = self._cancel or reason

    def check(self) -> None:
        """Raise ``Cancelled`` when the run was cancelled or nobody waits for it any more."""
        with self._cond:
            if self._cancel is None and self._readers == 0:
                wait = self._limits.grace if self._claimed else self._limits.claim
                if time.monotonic() - self._alone_since > wait:
                    self._cancel = ("its page went away" if self._claimed else f"no page asked for its steps within {wait:g} s")
            if self._cancel is not None:
                raise Cancelled(self._cancel)

    def _emit(self, name: str, payload: dict[str, Any], final: bool = False) -> None:
        with self._cond:
            self.events.append((name, json.dumps(payload, default=str)))
            self.finished = self.finished or final
            self._cond.notify_all()

    def on_step(self, mg) -> Callable[[int, Tensor], None]:
        def record(i: int, x: Tensor) -> None:
            self.check()  # between two steps: stop here when nobody waits for the run
            tokens, image = frames.token_grid_pictures(mg, x[:1])[0], frames.partial_images(mg, x[:1])[0]
            self._frame(i, tokens, image, int(mg.denoiser().masked(x[:1]).sum()))

        return record

    def _frame(self, i: int, tokens: np.ndarray, image: np.ndarray, masked: int, unchanged: bool = False) -> None:
        self._last = (tokens, image)
        self.gif_frames.append(frames.gif_frame(tokens, image, i, self.steps))
        payload = {"i": i, "steps": self.steps, "masked": masked, "unchanged": unchanged,
                   "tokens": frames.data_url(frames.png(tokens)), "image": frames.data_url(frames.png(image))}
        self._emit("step", payload)

    def run(self, work: Callable[["Job"], dict[str, Any]]) -> None:
        """Run ``work(job)`` (which samples, with ``job.on_step``) and emit its outcome."""
        try:
            self.check()
            self.state = "running"
            result = work(self)
            for i in range(len(self.gif_frames), self.steps if self._last is not None else 0):
                self._frame(i, *self._last, masked=0, unchanged=True)
            self._end("done", {**result, "frames": len(self.gif_frames), "gif": f"/api/jobs/{self.id}/gif"})
        except Cancelled as e:
            self._end("cancelled", {"error": f"the run was cancelled after {len(self.gif_frames)} of {self.steps} steps: {e}"})
        except MaskgenError as e:
            self._end("failed", {"error": str(e)})
        except Exception as e:  # noqa: BLE001 - the page shows any failure as one line
            self._end("failed", {"error": f"sampling failed: {type(e).__name__}: {e}"})

    def _end(self, state: str, payload: dict[str, Any]) -> None:
        self.state = state
        self._emit(state, payload, final=True)

    def stream(self, wait: float = 15.0) -> Iterator[tuple[str, str] | None]:
        """Every event, from the first, as it comes; None when ``wait`` seconds pass without
        one (the server then looks whether its client is still there)."""
        seen = 0
        while True:
            with self._cond:
                if seen == len(self.events) and not self.finished:
                    self._cond.wait(wait)
                new, done = self.events[seen:], self.finished
            seen += len(new)
            yield from new
            if done and seen == len(self.events):
                return
            if not new:
                yield None

    def gif(self) -> bytes:
        if not self.finished:
            raise MaskgenError("the run has not finished yet")
        if self.state == "cancelled":
            raise MaskgenError("the run was cancelled before its last step")
        if not self.gif_frames:
            raise MaskgenError("the run failed before its first step")
        return frames.gif(self.gif_frames)


class JobBoard:
    """The app's jobs by id; runs them one at a time (they share the CPU and the model)."""

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskgen-app")

    def submit(self, steps: int, work: Callable[[Job], dict[str, Any]]) -> Job:
        job = Job(steps, self.limits)
        with self._lock:
            pending = sum(not j.finished for j in self._jobs.values())
            if pending >= MAX_PENDING:
                raise RequestError(f"the app is busy with {pending} runs; try again when one has finished", 503)
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS and next(iter(self._jobs.values())).finished:
                self._jobs.popitem(last=False)
        self._worker.submit(job.run, work)
        return job

    def __len__(self) -> int:
        """How many runs the board holds (finished ones are dropped past ``KEEP_JOBS``)."""
        with self._lock:
            return len(self._jobs)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def close(self) -> None:
        """Cancel every run (a queued one ends at once, a running one at its next step)."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel("the app is stopping")
        self._worker.shutdown(wait=False)


def final_payload(image: Tensor, result) -> dict[str, Any]:
    """The ``done`` event's image (PNG data URL at the model's size) and run settings."""
    return {"image": frames.tensor_url(image), "nfe": result.nfe, "settings": result.settings}
