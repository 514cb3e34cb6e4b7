"""The app's HTTP server: the page, a JSON API, and the live steps as Server-Sent Events.

    GET  /                      the page (static/index.html, static/app.js)
    GET  /api/info              the model's classes, samplers and image size
    POST /api/generate          {class, sampler, steps, seed, choice_temperature, temperature,
                                 cfg, self_guidance} -> {job, steps}
    POST /api/inpaint           the same plus {image, mask} (base64 PNG / data: URLs) -> {job, steps}
    GET  /api/jobs/ID/events    text/event-stream: a ``step`` event per step, then ``done``
                                (final PNG, NFE, settings), ``failed`` or ``cancelled`` ({error})
    GET  /api/jobs/ID/gif       the steps as an animated GIF, once the job is done

Bad input is answered at once with HTTP 400 (413 for a body over the limit, 503 while too
many runs wait) and {"error": one line}; nothing is sampled. The limits on a request (body
size, read time, JSON nesting and integer digits) are ``body.py``'s; a run whose page went
away is cancelled (``jobs.py``).
"""

from __future__ import annotations

import json
import re
import select
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import torch

from ..errors import MaskgenError
from ..pipelines.inpainting import inpaint
from .body import Limits, RequestError, content_length, parse_json, read_body
from .frames import tensor_url
from .inputs import ModelInfo, read_image, read_mask, sample_request
from .jobs import Job, JobBoard, final_payload

MAX_MESSAGE = 300  # characters of an error line: a refused value is quoted, never in full
POLL = 0.25  # seconds between two looks, on an event stream, whether its page is still there
HEARTBEAT = 15.0  # seconds of silence after which an event stream sends a comment
LINGER = 1.0  # seconds a refused request's unread body is drained before the connection closes
_DRAIN = 1 << 16
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8")}
JOB_PATH = re.compile(r"^/api/jobs/([0-9a-f]{1,32})/(events|gif)$")


class AppServer(ThreadingHTTPServer):
    """A threading HTTP server holding one loaded model (``MaskGen``) and its jobs."""

    daemon_threads = True  # an open event stream never keeps the process alive

    def __init__(self, address: tuple[str, int], mg, quiet: bool = True, limits: Limits = Limits()):
        self.mg, self.info, self.quiet, self.limits = mg, ModelInfo.of(mg), quiet, limits
        self.board = JobBoard(limits)
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
    """The routes. Every request is answered: a refusal (``RequestError``, ``MaskgenError``)
    and any other exception in a handler become one JSON line (``{"error": ...}``, 4xx or
    500), and so do the base class's own refusals (a malformed request line, headers too
    long, an unknown method); only a client that is gone gets no answer."""

    server: AppServer

    def setup(self) -> None:
        self.timeout = self.server.limits.read_timeout  # every read and write of the socket
        self._answered = self._unread = False
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if not self.server.quiet:
            super().log_message(format, *args)

    def end_headers(self) -> None:
        self._answered = True
        super().end_headers()

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
        line = " ".join(str(message).split())  # one line, and a short one: values are quoted in it
        self._json(status, {"error": line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "\u2026"})

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        except TimeoutError:  # the request line came, its headers did not
            self.send_error(HTTPStatus.REQUEST_TIMEOUT, f"the request's headers did not arrive within {self.timeout:g} s")
            return False

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a request line too broken to say its version:
            self.request_version = "HTTP/1.0"  # the answer has a status line all the same
        try:
            self._error(code, message or HTTPStatus(code).phrase)
        except OSError:
            pass  # the client is gone

    def _answer(self, route) -> None:
        try:
            route()
        except RequestError as e:
            self._refuse(e.status, str(e))
        except MaskgenError as e:
            self._refuse(400, str(e))
        except OSError as e:
            if self._client_gone() or isinstance(e, (BrokenPipeError, ConnectionResetError, TimeoutError)):
                self.close_connection = True  # the client went away: no one to answer
            else:
                self._internal(e)
        except Exception as e:  # noqa: BLE001 - any failure is one line, never a dropped connection
            self._internal(e)

    def _internal(self, e: Exception) -> None:
        line = " ".join(f"{self.command} {self.path[:200]} failed: {type(e).__name__}: {e}".split())
        sys.stderr.write(f"maskgen app: {line}\n")  # for whoever runs the app: one line too
        self._refuse(500, f"the app failed on this request: {type(e).__name__}: {e}")

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True  # an unread body must not be taken for the next request
        if self._answered:
            return  # the reply had begun (an event stream): it just ends
        try:
            self._error(status, message)
            if self._unread:
                self._linger()
        except OSError:
            pass

    def _linger(self) -> None:
        """After a refusal that left the body unread: end the reply, then drop what the client
        still sends (at most ``max_body`` bytes, for at most ``LINGER`` seconds), so that closing
        does not reset the connection before the client has read the answer."""
        self.connection.shutdown(socket.SHUT_WR)
        deadline, got = time.monotonic() + LINGER, 0
        while got <= self.server.limits.max_body and deadline > time.monotonic():
            self.connection.settimeout(deadline - time.monotonic())
            chunk = self.connection.recv(_DRAIN)
            if not chunk:
                return
            got += len(chunk)

    def _client_gone(self) -> bool:
        """Whether the client closed its side: the socket reads as ended (a request sent
        after this one would read as data, not as the end)."""
        try:
            if not select.select([self.connection], [], [], 0)[0]:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._post)

    def _get(self) -> None:
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
        """The run's events as Server-Sent Events. The stream is the run's reader: when the
        page goes away (noticed within ``POLL`` seconds, between steps or not) the run loses
        it, and a run nobody reads is cancelled (``jobs.Job.check``)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        job.attach()
        try:
            retry = "retry: 1000\n"  # with the first event: a dropped page reconnects within the run's grace
            last = time.monotonic()
            for event in job.stream(POLL):
                if self._client_gone():
                    return
                if event is None and time.monotonic() - last < HEARTBEAT:
                    continue
                chunk = ": still sampling\n\n" if event is None else f"{retry}event: {event[0]}\ndata: {event[1]}\n\n"
                retry = retry if event is None else ""
                self.wfile.write(chunk.encode())
                self.wfile.flush()
                last = time.monotonic()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page went away or stopped reading
        finally:
            job.detach()
            self.close_connection = True

    def _post(self) -> None:
        self._unread = True
        path = self.path.split("?", 1)[0]
        starts = {"/api/generate": self.server.start_generate, "/api/inpaint": self.server.start_inpaint}
        if path not in starts:
            raise RequestError(f"no such endpoint: POST {path}", 404)
        limits = self.server.limits
        length = content_length(self.headers, limits.max_body)
        raw = read_body(self.rfile, self.connection, length, limits.read_timeout)
        self._unread = False
        body = parse_json(raw)
        job = starts[path](body)
        self._json(200, {"job": job.id, "steps": job.steps})


def make_server(mg, host: str = "127.0.0.1", port: int = 0, quiet: bool = True, limits: Limits = Limits()) -> AppServer:
    """An ``AppServer`` for model ``mg`` bound to ``host:port`` (0: a free port), with the
    request limits ``limits`` (``body.Limits``); call ``serve_forever()`` on it (in a thread,
    for tests) and ``shutdown()`` to stop."""
    try:
        return AppServer((host, port), mg, quiet, limits)
    except OSError as e:
        raise MaskgenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
