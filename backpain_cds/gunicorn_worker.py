"""A gunicorn worker that survives slow clients without a proxy: requests are buffered first.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its first byte
arrives, and the thread then reads headers and body with blocking reads and no overall
deadline: eight connections that send their headers one byte per second hold every thread
(issue 9, Found 1). This worker keeps gthread's threads and event loop but reads each request
*in the event loop*, non-blocking, into a buffer -- what a buffering reverse proxy does -- and
gives a thread only a complete request (headers and the whole body, by ``Content-Length`` or
chunked framing). A slow client therefore costs a buffer, never a thread:

* a request not complete within ``request_read_seconds`` of its first wait is answered
  ``408`` and closed;
* a declared ``Content-Length`` above ``max_body_bytes``, or a chunked body growing past it,
  is answered ``413`` by the worker at once (the app would refuse it too, after reading);
* headers longer than :data:`MAX_HEADER_BYTES` go to a thread at once, where gunicorn's
  parser refuses them (431/400) without waiting;
* ``Expect: 100-continue`` is answered by the worker (and the header removed), since the
  body is what it waits for;
* TLS and HTTP/2 connections are not buffered (the service speaks plain HTTP/1.1 behind a
  TLS terminator, see README "Serving").

At most ``worker_connections`` connections are held per worker (gunicorn stops accepting
beyond), so a flood of slow clients is bounded too; ``tests/e2e/test_slow_clients.py`` and
``bench/slow_clients.py`` measure it.

It overrides gthread internals (``accept``, ``enqueue_req``, ``set_accept_enabled``,
``murder_pending``, ``method_queue``, ``unreader.take_buffered``) as gunicorn 27 has them:
``pyproject.toml`` pins ``gunicorn>=27.0,<28`` and CI runs the suite at the lowest version.
"""

from __future__ import annotations

import errno
import re
import selectors
import socket
import threading
import time
import typing as t
from collections import deque
from functools import partial

from gunicorn import http
from gunicorn.workers.gthread import ThreadWorker

#: the request line and header fields together (gunicorn refuses more itself)
MAX_HEADER_BYTES = 64 * 1024
_RECV_BYTES = 64 * 1024
_LINGER_SECONDS = 2.0
_ACCEPT_PAUSE_SECONDS = 0.02
_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue[ \t]*(?=\r\n)", re.IGNORECASE)

COMPLETE, INCOMPLETE, TOO_LARGE = "complete", "incomplete", "too-large"


def request_state(buf: bytes | bytearray, max_body_bytes: int) -> str:
    """Whether ``buf`` holds a whole HTTP/1.x request (``COMPLETE``), needs more bytes
    (``INCOMPLETE``), or has a body over ``max_body_bytes`` (``TOO_LARGE``).

    Anything malformed is ``COMPLETE``: gunicorn's parser, in a thread, then refuses it
    without waiting for more input.
    """
    end = buf.find(_HEADER_END)
    if end < 0:
        return COMPLETE if len(buf) > MAX_HEADER_BYTES else INCOMPLETE
    head = bytes(buf[:end + 2])
    body_start = end + 4
    if _CHUNKED.search(head):
        return _chunked_state(buf, body_start, max_body_bytes)
    match = _CONTENT_LENGTH.search(head)
    if match is None:
        return COMPLETE  # no body (a GET), or one gunicorn will refuse
    value = match.group(1).strip()
    if not value.isdigit():
        return COMPLETE  # malformed: gunicorn answers 400
    length = int(value)
    if length > max_body_bytes:
        return TOO_LARGE
    return COMPLETE if len(buf) - body_start >= length else INCOMPLETE


def _chunked_state(buf: bytes | bytearray, pos: int, max_body_bytes: int) -> str:
    """Walk the chunk framing from ``pos``; count the data bytes against the limit."""
    total = 0
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return INCOMPLETE if len(buf) - pos <= 1024 else COMPLETE
        size_field = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            return COMPLETE  # malformed: gunicorn answers 400
        if size == 0:  # last chunk: then trailer fields, ended by an empty line
            if buf[line_end + 2:line_end + 4] == b"\r\n" or buf.find(_HEADER_END, line_end) >= 0:
                return COMPLETE
            return INCOMPLETE if len(buf) - line_end <= MAX_HEADER_BYTES else COMPLETE
        total += size
        if total > max_body_bytes:
            return TOO_LARGE
        pos = line_end + 2 + size + 2
        if pos > len(buf):
            return INCOMPLETE


_TOO_LARGE_BODY = (b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"too-costly",'
                   b'"diagnostics":"the request body is larger than limits.max_body_bytes"}]}')
_REFUSALS = {
    408: b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    413: b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
         + b"Content-Length: %d\r\n\r\n" % len(_TOO_LARGE_BODY) + _TOO_LARGE_BODY,
}


def _noop() -> None:
    pass


class BufferingThreadWorker(ThreadWorker):
    """gthread, but a thread only ever gets a request that has fully arrived."""

    #: set by ``backpain_cds.server.run_gunicorn`` from the settings, before the fork
    max_body_bytes: int = 16 * 1024 * 1024
    request_read_seconds: float = 15.0

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffering: deque[t.Any] = deque()  #: connections whose request is still arriving
        self._accept_paused_until = 0.0
        self.active = 0  #: requests handed to a thread and not finished yet

    def finish_request(self, conn: t.Any, fs: t.Any) -> None:
        self.active -= 1
        super().finish_request(conn, fs)

    # -- sharing connections between workers -------------------------------------------------
    # All workers accept from one socket, and whichever wakes first takes the connection: a
    # client that opens a few kept-alive connections at once can land them all on one worker
    # while the other idles. A worker that holds as many connections as it has threads steps
    # back from accepting for a moment, so that a less busy worker takes the next one.
    # Only connections that are being served or kept alive count: connections still sending
    # their request (slow clients, a flood of new connections) never slow down accepting.

    def accept(self, listener: t.Any) -> None:
        super().accept(listener)
        established = self.active + len(self.keepalived_conns)
        if self.cfg.workers > 1 and established >= self.cfg.threads:
            self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE_SECONDS
            self.set_accept_enabled(False)
            timer = threading.Timer(_ACCEPT_PAUSE_SECONDS, self.method_queue.defer, args=(_noop,))
            timer.daemon = True
            timer.start()  # wakes the event loop when the pause ends

    def set_accept_enabled(self, enabled: bool | None) -> None:
        if enabled and time.monotonic() < self._accept_paused_until:
            return
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # Graceful stop (SIGTERM): gthread stops accepting but keeps its listening sockets
            # open until the calls in flight are done, so the kernel would go on completing new
            # connections into the backlog, left unanswered and reset at exit. Closing them now
            # (the master closes its copies too) makes new connections refused at once, and a
            # load balancer sends them to another instance while these calls finish.
            for listener in self.sockets:
                listener.close()  # idempotent: gthread closes them again when it exits

    def enqueue_req(self, conn: t.Any) -> None:
        if self.cfg.is_ssl or conn.is_http2:
            self.active += 1
            super().enqueue_req(conn)
            return
        conn.inbuf = bytearray()
        if conn.parser is not None:  # kept alive: bytes read ahead belong to this request
            conn.inbuf += conn.parser.unreader.take_buffered()
        conn.read_deadline = time.monotonic() + self.request_read_seconds
        conn.sock.setblocking(False)
        # Usually the whole request is there already (a kept-alive connection that became
        # readable, a client that sent at once): read it now, without a poller round trip.
        if self._receive(conn) or getattr(conn, "lingering", False):
            return
        self.buffering.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: t.Any, _sock: t.Any) -> None:
        if self._receive(conn):
            self._forget(conn)

    def _receive(self, conn: t.Any) -> bool:
        """Read what has arrived; True when this connection is done buffering."""
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return bool(conn.inbuf) and self._advance(conn)
        except OSError:
            data = b""
        if not data:
            self._forget(conn)
            self._close(conn)
            return True
        if getattr(conn, "lingering", False):
            return False  # refused already: discard what the client still sends
        conn.inbuf += data
        return self._advance(conn)

    def _advance(self, conn: t.Any) -> bool:
        """Dispatch or refuse the buffered request if possible; True when done buffering."""
        state = request_state(conn.inbuf, self.max_body_bytes)
        if state == INCOMPLETE:
            if not getattr(conn, "continued", False) and _EXPECT_CONTINUE.search(conn.inbuf):
                self._answer_continue(conn)
            return False
        if state == TOO_LARGE:
            self._linger(conn, 413)
            return False
        data = bytes(conn.inbuf)
        if getattr(conn, "continued", False):
            data = _EXPECT_CONTINUE.sub(b"", data, count=1)
        conn.inbuf = bytearray()
        conn.continued = False
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.initialized = True
        conn.parser.unreader.unread(data)
        conn.data_ready = True
        conn.sock.setblocking(True)
        self.active += 1
        super().enqueue_req(conn)
        return True

    def _answer_continue(self, conn: t.Any) -> None:
        head_end = conn.inbuf.find(_HEADER_END)
        if head_end >= 0 and _EXPECT_CONTINUE.search(bytes(conn.inbuf[:head_end + 2])):
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
            conn.continued = True

    def _linger(self, conn: t.Any, status: int) -> None:
        """Answer now, then read and discard for a moment before closing: closing a socket
        with unread input sends a reset, which can destroy the answer before the client
        reads it (RFC 9112 section 9.6, "lingering close")."""
        try:
            conn.sock.send(_REFUSALS[status])
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.lingering = True
        conn.inbuf = bytearray()
        conn.read_deadline = time.monotonic() + _LINGER_SECONDS
        if conn not in self.buffering:
            self.buffering.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _refuse(self, conn: t.Any, status: int) -> None:
        try:
            conn.sock.send(_REFUSALS[status])
        except OSError:
            pass
        self._close(conn)

    def _forget(self, conn: t.Any) -> None:
        try:
            self.buffering.remove(conn)
        except ValueError:
            pass
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _close(self, conn: t.Any) -> None:
        self.nr_conns -= 1
        try:
            conn.close()
        except OSError as exc:  # pragma: no cover - already gone
            if exc.errno not in (errno.EBADF, errno.ENOTCONN):
                raise

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        expired = [conn for conn in self.buffering if conn.read_deadline <= now]
        for conn in expired:  # at most worker_connections entries, once per loop tick
            self._forget(conn)
            if getattr(conn, "lingering", False):
                self._close(conn)
            else:
                self._refuse(conn, 408)
