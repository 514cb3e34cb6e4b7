"""Sampling runs of the app, one at a time, each with the events the page streams.

A job runs ``MaskGen.generate`` (or ``inpainting.inpaint``) in a worker thread; its
``on_step`` turns each step's state into a frame event (the token grid and the decoded
image, ``frames.py``), which any number of readers receive in order, from the first, as
Server-Sent Events. The loop calls ``on_step`` only on steps that had masked tokens left, so
when a fill rule reveals everything early the remaining steps are reported as frames of the
unchanged state: the page and the GIF always have one frame per step.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np
from torch import Tensor

from ..errors import MaskgenError
from . import frames

KEEP_JOBS = 8  # finished jobs whose frames and GIF stay available


class Job:
    """One sampling run: its events (``step``, then ``done`` or ``failed``) and GIF frames."""

    def __init__(self, steps: int):
        self.id = uuid.uuid4().hex[:12]
        self.steps = steps
        self.events: list[tuple[str, str]] = []
        self.gif_frames: list = []
        self.finished = False
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._cond = threading.Condition()

    def _emit(self, name: str, payload: dict[str, Any], final: bool = False) -> None:
        with self._cond:
            self.events.append((name, json.dumps(payload, default=str)))
            self.finished = self.finished or final
            self._cond.notify_all()

    def on_step(self, mg) -> Callable[[int, Tensor], None]:
        def record(i: int, x: Tensor) -> None:
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
            result = work(self)
            for i in range(len(self.gif_frames), self.steps if self._last is not None else 0):
                self._frame(i, *self._last, masked=0, unchanged=True)
            self._emit("done", {**result, "frames": len(self.gif_frames), "gif": f"/api/jobs/{self.id}/gif"}, final=True)
        except MaskgenError as e:
            self._emit("failed", {"error": str(e)}, final=True)
        except Exception as e:  # noqa: BLE001 - the page shows any failure as one line
            self._emit("failed", {"error": f"sampling failed: {type(e).__name__}: {e}"}, final=True)

    def stream(self, heartbeat: float = 15.0) -> Iterator[tuple[str, str] | None]:
        """Every event, from the first, as it comes; None when ``heartbeat`` seconds pass
        without one (the server sends an SSE comment, so a dead connection is noticed)."""
        seen = 0
        while True:
            with self._cond:
                if seen == len(self.events) and not self.finished:
                    self._cond.wait(heartbeat)
                new, done = self.events[seen:], self.finished
            seen += len(new)
            yield from new
            if done and seen == len(self.events):
                return
            if not new:
                yield None

    def gif(self) -> bytes:
        if not self.finished or not self.gif_frames:
            raise MaskgenError("the run has not finished yet" if not self.finished else "the run failed before its first step")
        return frames.gif(self.gif_frames)


class JobBoard:
    """The app's jobs by id; runs them one at a time (they share the CPU and the model)."""

    def __init__(self):
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskgen-app")

    def submit(self, steps: int, work: Callable[[Job], dict[str, Any]]) -> Job:
        job = Job(steps)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS and next(iter(self._jobs.values())).finished:
                self._jobs.popitem(last=False)
        self._worker.submit(job.run, work)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


def final_payload(image: Tensor, result) -> dict[str, Any]:
    """The ``done`` event's image (PNG data URL at the model's size) and run settings."""
    return {"image": frames.tensor_url(image), "nfe": result.nfe, "settings": result.settings}
