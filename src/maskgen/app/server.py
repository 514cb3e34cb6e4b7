"""The app's HTTP server: the page, a JSON API, and the live steps as Server-Sent Events.

    GET  /                      the page (static/index.html, static/app.js)
    GET  /api/info              the model's classes, samplers and image size
    POST /api/generate          {class, sampler, steps, seed, choice_temperature, temperature,
                                 cfg, self_guidance} -> {job, steps}
    POST /api/inpaint           the same plus {image, mask} (base64 PNG / data: URLs) -> {job, steps}
    GET  /api/jobs/ID/events    text/event-stream: a ``step`` event per step, then ``done``
                                (final PNG, NFE, settings) or ``failed`` ({error})
    GET  /api/jobs/ID/gif       the steps as an animated GIF, once the job is done

Bad input is answered at once with HTTP 400 and {"error": one line}; nothing is sampled.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import torch

from ..errors import MaskgenError
from ..inpainting import inpaint
from .inputs import ModelInfo, read_image, read_mask, sample_request
from .frames import tensor_url
from .jobs import Job, JobBoard, final_payload

MAX_BODY = 20 * 1024 * 1024  # an uploaded image and its mask, base64
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8")}
JOB_PATH = re.compile(r"^/api/jobs/([0-9a-f]{1,32})/(events|gif)$")


class AppServer(ThreadingHTTPServer):
    """A threading HTTP server holding one loaded model (``MaskGen``) and its jobs."""

    daemon_threads = True  # an open event stream never keeps the process alive

    def __init__(self, address: tuple[str, int], mg, quiet: bool = True):
        self.mg, self.info, self.board, self.quiet = mg, ModelInfo.of(mg), JobBoard(), quiet
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        self.board.close()
        super().server_close()

    def start_generate(self, body: Any) -> Job:
        req = sample_request(body, self.info)
        sampler = self.mg.sampler(req.spec)  # a missing critic or module fails here, as a 400

        def work(job: Job) -> dict[str, Any]:
            images, result = self.mg.generate([req.label], sampler, seed=req.seed, progress=False, on_step=job.on_step(self.mg))
            return final_payload(images[0], result)

        return self.board.submit(req.spec.steps, work)

    def start_inpaint(self, body: Any) -> Job:
        req = sample_request(body, self.info, extra=("image", "mask"))
        image = read_image(body.get("image"), self.info.image_shape)
        mask = read_mask(body.get("mask"), self.info.image_shape[1:])
        sampler = self.mg.sampler(req.spec)

        def work(job: Job) -> dict[str, Any]:
            out, result = inpaint(self.mg, image, mask, [req.label], sampler, seed=req.seed, on_step=job.on_step(self.mg))
            payload = final_payload(out[0], result)
            # what was sampled from, at the model's size: the page shows it, a test compares it
            return {**payload, "input": tensor_url(image[0]), "mask": tensor_url(mask[None].to(torch.uint8) * 255)}

        return self.board.submit(req.spec.steps, work)


class Handler(BaseHTTPRequestHandler):
    server: AppServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            name, kind = STATIC[path]
            return self._send(200, resources.files(__package__).joinpath("static", name).read_bytes(), kind)
        if path == "/api/info":
            return self._json(200, self.server.info.to_dict())
        match = JOB_PATH.match(path)
        if not match:
            return self._error(404, f"no such page: {path}")
        try:
            job = self.server.board.get(match.group(1))
        except KeyError:
            return self._error(404, f"no job {match.group(1)} (finished jobs are kept for a while, then dropped)")
        if match.group(2) == "gif":
            try:
                data = job.gif()
            except MaskgenError as e:
                return self._error(HTTPStatus.CONFLICT, str(e))
            return self._send(200, data, "image/gif", {"Content-Disposition": f'attachment; filename="maskgen-{job.id}.gif"'})
        self._events(job)

    def _events(self, job: Job) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            for event in job.stream():
                chunk = ": still sampling\n\n" if event is None else f"event: {event[0]}\ndata: {event[1]}\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away; the job goes on and keeps its frames

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        starts = {"/api/generate": self.server.start_generate, "/api/inpaint": self.server.start_inpaint}
        if path not in starts:
            return self._error(404, f"no such endpoint: POST {path}")
        try:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise MaskgenError("the request has no valid Content-Length") from None
            if length > MAX_BODY:
                raise MaskgenError(f"the request is {length} bytes; at most {MAX_BODY}")
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise MaskgenError(f"the request body is not JSON: {e}") from None
            job = starts[path](body)
        except MaskgenError as e:
            return self._error(400, str(e))
        self._json(200, {"job": job.id, "steps": job.steps})


def make_server(mg, host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> AppServer:
    """An ``AppServer`` for model ``mg`` bound to ``host:port`` (0: a free port); call
    ``serve_forever()`` on it (in a thread, for tests) and ``shutdown()`` to stop."""
    try:
        return AppServer((host, port), mg, quiet)
    except OSError as e:
        raise MaskgenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
