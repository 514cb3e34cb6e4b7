"""Rule: the app answers every request, at once, and stops work nobody waits for.

Over a real socket, every operation with a timeout (a regression fails, never hangs): a bad
Content-Length, a body shorter than announced, one over the size limit, JSON nested too deep,
an integer of thousands of digits, a body that is no JSON, uploads in unusual image modes,
and a fault inside a handler are each answered with one line of JSON (a 4xx, a 500 for the
fault), no traceback, no job started, and the server answers a normal request afterwards.
A run whose event stream closes ends cancelled, not done, soon after; so does a queued one.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from maskgen.app import make_server
from maskgen.app.body import Limits
from maskgen.pipelines import MaskGen, reference_dir

READ_TIMEOUT = 2.0  # the test server's limit on reading a request
MAX_BODY = 1 << 20
LIMITS = Limits(max_body=MAX_BODY, read_timeout=READ_TIMEOUT, claim=1.5, grace=0.0)
AT_ONCE = 1.5  # seconds: an answer that needs no waiting comes well inside the read timeout
WAIT = 30.0  # any socket operation of the test: past this it fails instead of hanging


@pytest.fixture(scope="module")
def app():
    server = make_server(MaskGen.load(reference_dir()), port=0, limits=LIMITS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def exchange(app, raw: bytes, then_close: bool = False) -> tuple[int, bytes, float]:
    """Send ``raw`` (a whole request, or its start) and read the reply to its end: the status,
    the body and the seconds it took. ``then_close``: the client gives up (closes its side)
    right after sending."""
    start = time.monotonic()
    with socket.create_connection(app.server_address[:2], timeout=WAIT) as s:
        s.sendall(raw)
        if then_close:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    elapsed = time.monotonic() - start
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body, elapsed


def post(path: str, body: bytes, length: int | str | None = None, extra: str = "") -> bytes:
    length = len(body) if length is None else length
    cl = "" if length == "" else f"Content-Length: {length}\r\n"
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{cl}{extra}\r\n".encode() + body


def one_line_error(body: bytes) -> str:
    """The reply's error: JSON {"error": one line}."""
    reply = json.loads(body)
    assert set(reply) == {"error"} and isinstance(reply["error"], str) and reply["error"]
    assert "\n" not in reply["error"] and "Traceback" not in reply["error"] and len(reply["error"]) < 1000
    return reply["error"]


def still_answers(app) -> None:
    status, body, _ = exchange(app, b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and json.loads(body)["classes"][0]


def events(app, job: str) -> list[tuple[str, dict]]:
    status, body, _ = exchange(app, f"GET /api/jobs/{job}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 200
    out = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def wait_finished(app, job_id: str, bound: float):
    job = app.board.get(job_id)
    deadline = time.monotonic() + bound
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    return job


GOOD = json.dumps({"class": 1, "steps": 2}).encode()
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "name, raw, statuses",
    [
        ("Content-Length -1", post("/api/generate", GOOD, -1), {400}),
        ("Content-Length not a number", post("/api/generate", GOOD, "12abc"), {400}),
        ("two Content-Lengths", post("/api/generate", GOOD, extra="Content-Length: 3\r\n"), {400}),
        ("no Content-Length", post("/api/generate", b"", ""), {400, 411}),
        ("a chunked body", post("/api/generate", b"5\r\nhello\r\n0\r\n\r\n", "", "Transfer-Encoding: chunked\r\n"), {400, 411}),
        ("a body over the limit", post("/api/generate", b"", MAX_BODY + 1), {400, 413}),
        ("a body over the limit, being sent", post("/api/generate", b"{" + b" " * (1 << 16), MAX_BODY + 1), {400, 413}),
        ("JSON nested 100,000 deep", post("/api/generate", DEEP), {400}),
        ("a 5000-digit integer", post("/api/generate", b'{"class": 1, "seed": ' + b"7" * 5000 + b"}"), {400}),
        ("a 5000-digit negative integer in a list", post("/api/generate", b'{"class": [-' + b"9" * 5000 + b"]}"), {400}),
        ("NaN", post("/api/generate", b'{"class": 1, "cfg": NaN}'), {400}),
        ("a body that is no JSON", post("/api/generate", b"class=1&steps=2"), {400}),
        ("a body that is no UTF-8", post("/api/generate", b'{"class": "\xff\xfe"}'), {400}),
        ("a JSON list", post("/api/generate", b"[1, 2]"), {400}),
        ("50,000 unknown fields", post("/api/generate", json.dumps({f"f{i}": 0 for i in range(50_000)}).encode()), {400}),
        ("a POST to no endpoint", post("/api/nothing", GOOD), {404}),
        ("a malformed request line", b"GARBAGE\r\n\r\n", {400}),
        ("an unknown method", b"PUT /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", {405, 501}),
    ],
)
def test_a_bad_request_is_answered_at_once_in_one_line(app, capsys, name, raw, statuses):
    before = len(app.board)
    status, body, elapsed = exchange(app, raw)
    assert status in statuses, (name, status, body)
    one_line_error(body)
    assert elapsed < AT_ONCE, f"{name}: answered after {elapsed:.2f} s"
    assert len(app.board) == before  # nothing was sampled
    still_answers(app)
    assert "Traceback" not in capsys.readouterr().err


def test_a_body_shorter_than_its_content_length_is_answered_at_the_read_timeout(app, capsys):
    before = len(app.board)
    status, body, elapsed = exchange(app, post("/api/generate", GOOD, len(GOOD) + 100))
    assert status == 400 and "Content-Length" in one_line_error(body)
    assert READ_TIMEOUT * 0.9 <= elapsed < READ_TIMEOUT + AT_ONCE
    # the client gives up before the body is complete: answered at once, and no run starts
    status, body, elapsed = exchange(app, post("/api/generate", GOOD, len(GOOD) + 100), then_close=True)
    assert status == 400 and "Content-Length" in one_line_error(body) and elapsed < AT_ONCE
    time.sleep(0.5)
    assert len(app.board) == before
    still_answers(app)
    assert "Traceback" not in capsys.readouterr().err


def test_headers_that_never_end_are_answered_at_the_read_timeout(app, capsys):
    status, body, elapsed = exchange(app, b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Le")
    assert status in {400, 408} and one_line_error(body)
    assert READ_TIMEOUT * 0.9 <= elapsed < READ_TIMEOUT + AT_ONCE
    still_answers(app)
    assert "Traceback" not in capsys.readouterr().err


def test_a_fault_inside_a_handler_is_a_one_line_500(app, capsys, monkeypatch):
    def broken():
        raise RuntimeError("a fault\nover two lines")

    monkeypatch.setattr(app.info, "to_dict", broken)
    status, body, elapsed = exchange(app, b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 500 and elapsed < AT_ONCE
    assert "RuntimeError" in one_line_error(body)
    monkeypatch.undo()
    still_answers(app)
    assert "Traceback" not in capsys.readouterr().err


def _encoded(image: Image.Image, fmt: str, **kw) -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return base64.b64encode(buf.getvalue()).decode()


def _halves(mode: str, dark, light) -> Image.Image:
    """A 32x32 image in ``mode``: the left half ``dark``, the right half ``light``."""
    image = Image.new(mode, (32, 32), dark)
    image.paste(light, (16, 0, 32, 32))
    return image


MASK = np.zeros((32, 32), np.uint8)
MASK[:4, :4] = 255  # a corner to redraw; the rest of the input shows through


@pytest.mark.parametrize(
    "name, upload",
    [
        # CIELAB: L* 0 is black and L* 100 (255 in Pillow's 8 bits) white; a*, b* at 128 are neutral
        ("a LAB TIFF", lambda: _encoded(_halves("LAB", (0, 128, 128), (255, 128, 128)), "TIFF")),
        # CMYK: no ink is white, full black ink is black
        ("a CMYK JPEG", lambda: _encoded(_halves("CMYK", (0, 0, 0, 255), (0, 0, 0, 0)), "JPEG", quality=95)),
        # 16-bit grey: 0 black, 65535 white
        ("a 16-bit grey PNG", lambda: _encoded(Image.fromarray(np.where(np.arange(32) < 16, 0, 65535).astype(np.uint16)[None].repeat(32, 0)), "PNG")),
        ("a palette PNG with transparency", lambda: _encoded(_halves("RGB", (0, 0, 0), (255, 255, 255)).convert("P"), "PNG", transparency=7)),
    ],
)
def test_an_upload_in_any_image_mode_is_converted(app, capsys, name, upload):
    body = {"class": 0, "sampler": "halton", "steps": 2, "image": upload(), "mask": _encoded(Image.fromarray(MASK), "PNG")}
    status, reply, elapsed = exchange(app, post("/api/inpaint", json.dumps(body).encode()))
    assert status == 200 and elapsed < AT_ONCE, (name, reply)
    got = events(app, json.loads(reply)["job"])
    assert got[-1][0] == "done", got[-1]
    raw = base64.b64decode(got[-1][1]["input"].split(",", 1)[1])
    seen = np.asarray(Image.open(io.BytesIO(raw)), dtype=float)
    assert seen.shape == (32, 32)
    assert seen[:, 2:13].mean() < 12 and seen[:, 19:30].mean() > 243, (name, seen[:, 2:13].mean(), seen[:, 19:30].mean())
    assert "Traceback" not in capsys.readouterr().err


def test_an_image_mode_without_a_range_is_refused_in_one_line(app, capsys):
    floats = Image.fromarray(np.full((32, 32), 1000.0, np.float32))  # mode F: 1000 is no 8-bit grey
    body = {"class": 0, "steps": 2, "image": _encoded(floats, "TIFF"), "mask": _encoded(Image.fromarray(MASK), "PNG")}
    before = len(app.board)
    status, reply, elapsed = exchange(app, post("/api/inpaint", json.dumps(body).encode()))
    assert status == 400 and elapsed < AT_ONCE and "mode F" in one_line_error(reply)
    assert len(app.board) == before
    still_answers(app)
    assert "Traceback" not in capsys.readouterr().err


def test_a_run_whose_page_goes_away_is_cancelled(app):
    # 64 steps with CFG (two passes a step): seconds of sampling, far longer than it takes
    # to notice that the stream closed
    status, reply, _ = exchange(app, post("/api/generate", json.dumps({"class": 3, "steps": 64, "cfg": 1.0}).encode()))
    assert status == 200
    job_id = json.loads(reply)["job"]
    with socket.create_connection(app.server_address[:2], timeout=WAIT) as s:
        s.sendall(f"GET /api/jobs/{job_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        seen = b""
        while b"event: step" not in seen:
            chunk = s.recv(1 << 16)
            assert chunk, "the stream ended before the first step"
            seen += chunk
    left = time.monotonic()
    job = wait_finished(app, job_id, bound=5.0)
    assert job.finished, "the run was still going 5 s after its page went away"
    assert job.state == "cancelled" and time.monotonic() - left < 5.0
    got = events(app, job_id)  # a page that comes back is told so
    assert got[-1][0] == "cancelled" and "cancelled" in got[-1][1]["error"]
    assert 1 <= len([e for e in got if e[0] == "step"]) < 64
    status, body, _ = exchange(app, f"GET /api/jobs/{job_id}/gif HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 409 and one_line_error(body)


def test_queued_runs_nobody_waits_for_never_start(app):
    release = threading.Event()
    blocker = app.board.submit(1, lambda job: (release.wait(WAIT), {})[1])  # holds the one worker
    try:
        status, reply, _ = exchange(app, post("/api/generate", json.dumps({"class": 1, "steps": 8}).encode()))
        assert status == 200
        watched = json.loads(reply)["job"]
        # its page opens the stream and leaves while the run still waits for the worker
        with socket.create_connection(app.server_address[:2], timeout=WAIT) as s:
            s.sendall(f"GET /api/jobs/{watched}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert s.recv(1 << 16).startswith(b"HTTP/1.0 200")
        # runs nobody ever opens a stream on, up to the limit of waiting runs; one more is refused
        unclaimed = []
        for _ in range(50):
            status, reply, elapsed = exchange(app, post("/api/generate", json.dumps({"class": 1, "steps": 8}).encode()))
            assert elapsed < AT_ONCE
            if status != 200:
                break
            unclaimed.append(json.loads(reply)["job"])
        assert status == 503 and one_line_error(reply)
        assert len(unclaimed) < 49
        time.sleep(LIMITS.claim + 0.5)
    finally:
        release.set()
    assert wait_finished(app, blocker.id, 5.0).state == "done"
    for job_id in [watched, *unclaimed]:
        job = wait_finished(app, job_id, 5.0)
        assert job.state == "cancelled" and not [e for e, _ in job.events if e == "step"]
    # and a run someone watches still runs to the end
    status, reply, _ = exchange(app, post("/api/generate", GOOD))
    assert status == 200 and events(app, json.loads(reply)["job"])[-1][0] == "done"
