"""The app's limits on a request, and its body read within them: every way a body can be
wrong ends in one ``RequestError`` line (a 4xx with ``{"error": ...}``), never a handler
blocked without end, a traceback, or a dropped connection.

- Content-Length: required on a POST, one value, decimal digits only (``-1``, ``+5``,
  ``5_0`` and two differing values are refused), at most ``Limits.max_body`` bytes (413).
- Read time: the socket's timeout bounds every read of the request line and headers, and
  the whole body must arrive within ``Limits.read_timeout`` seconds; a client announcing
  more bytes than it sends is answered at that deadline, not waited for.
- JSON: UTF-8; nested at most ``MAX_DEPTH`` deep (checked before parsing: Python's parser
  recurses once per level); integers of at most ``MAX_INT_DIGITS`` digits (``int()`` of
  4,300 or more digits raises, and converting long ones is quadratic); no NaN or Infinity.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..errors import MaskgenError

MAX_DEPTH = 8  # the app's requests are one flat object (depth 1); 8 leaves room to spare
MAX_INT_DIGITS = 20  # 2**64 - 1 has 20 digits: any seed, class or step count fits
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a JSON string, escapes included
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    """What one request may take, and when a run counts as abandoned (``jobs.Job``).

    max_body: bytes of a POST body (a 256x256 image and its mask, base64, are well under 1 MiB;
    20 MiB takes a phone photo). read_timeout: seconds for the whole body, and for any one read
    of the request line and headers. claim: seconds a new run waits for its first event-stream
    reader. grace: seconds a run waits, after its last reader left, for one to come back (the
    page's EventSource reconnects after 1 s)."""

    max_body: int = 20 * 1024 * 1024
    read_timeout: float = 10.0
    claim: float = 10.0
    grace: float = 5.0


class RequestError(MaskgenError):
    """A request refused in one line, with its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def content_length(headers, limit: int) -> int:
    """The body's length from ``headers`` (an ``email.message.Message``), checked."""
    if headers.get("Transfer-Encoding"):
        raise RequestError("send the request body with a Content-Length, not a Transfer-Encoding", 411)
    values = {v.strip() for v in headers.get_all("Content-Length") or []}
    if not values:
        raise RequestError("the request has no Content-Length: send its JSON body with one", 411)
    if len(values) > 1:
        raise RequestError("the request has two different Content-Length headers")
    text = values.pop()
    if not re.fullmatch(r"[0-9]{1,20}", text):
        raise RequestError(f"Content-Length must be a number of bytes (0 or more), got {text[:40]!r}")
    length = int(text)
    if length > limit:
        raise RequestError(f"the request body is {length} bytes; the app takes at most {limit}", 413)
    return length


def read_body(rfile: BinaryIO, sock: socket.socket, length: int, timeout: float) -> bytes:
    """Exactly ``length`` bytes from ``rfile``, all within ``timeout`` seconds, or a RequestError."""
    deadline, chunks, got = time.monotonic() + timeout, [], 0
    before = sock.gettimeout()
    try:
        while got < length:
            left = deadline - time.monotonic()
            chunk = None
            if left > 0:
                sock.settimeout(left)
                try:
                    chunk = rfile.read1(min(length - got, _CHUNK))  # type: ignore[attr-defined]
                except TimeoutError:
                    pass
            if chunk is None:
                raise RequestError(f"the request body did not arrive: {got} of its {length} bytes (Content-Length) in {timeout:g} s")
            if not chunk:
                raise RequestError(f"the request body ended after {got} of its {length} bytes (Content-Length)")
            chunks.append(chunk)
            got += len(chunk)
    finally:
        try:
            sock.settimeout(before)
        except OSError:
            pass
    return b"".join(chunks)


def nesting(raw: bytes) -> int:
    """How deep the arrays and objects of JSON text ``raw`` nest (brackets inside strings
    do not count), in a pass of numpy over the text: no recursion, whatever the depth."""
    codes = np.frombuffer(_STRING.sub(b"", raw), np.uint8)
    depth = deepest = 0
    for start in range(0, len(codes), 1 << 20):
        part = codes[start : start + (1 << 20)]
        step = (part == ord("[")).astype(np.int32) + (part == ord("{")) - (part == ord("]")) - (part == ord("}"))
        run = np.cumsum(step, dtype=np.int64) + depth
        deepest, depth = max(deepest, int(run.max())), int(run[-1])
    return deepest


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise RequestError(f"the request body holds an integer of {digits} digits; the app takes at most {MAX_INT_DIGITS}")
    return int(text)


def _constant(name: str) -> Any:
    raise RequestError(f"the request body is not JSON: {name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """The JSON value of body ``raw`` (None when empty), within the limits above."""
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(f"the request body is not JSON: it is not UTF-8 text (byte {e.start})") from None
    depth = nesting(raw)
    if depth > MAX_DEPTH:
        raise RequestError(f"the request body nests {depth} deep; the app takes at most {MAX_DEPTH}")
    try:
        return json.loads(text, parse_int=_integer, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise RequestError(f"the request body is not JSON: {e}") from None
    except RecursionError:  # unreachable past the depth check; kept so no input can raise it
        raise RequestError(f"the request body nests too deep; the app takes at most {MAX_DEPTH}") from None
