"""A full-duplex POST to kubo's RPC API: the upload is sent by a thread while the answer is read.

Why: kubo answers ``/add`` while it still reads the upload (one JSON line per file and directory), and
``requests`` reads nothing until it has sent the whole body. A tree of thousands of files fills the
socket buffers with answer lines (a unix socket's first: ~200 KiB), kubo stops reading, and both sides
wait for ever. Here the body goes out with chunked transfer encoding from a thread and the answer is
read as it comes. Only the API's own address is dialled (the multiaddr the client was made with).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from ipfshttpclient.http_common import multiaddr_to_url_data

from tce_ipfs.errors import NodeError


def _connect(api: str, timeout: float | None) -> tuple[socket.socket, str]:
    """A socket to the API at multiaddr ``api`` and the URL path of its RPC base (``/api/v0/``)."""
    base_url, uds_path, _family, _numeric = multiaddr_to_url_data(api, "api/v0")
    url = urllib.parse.urlsplit(base_url)
    try:
        if uds_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(uds_path)
        else:
            sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=timeout)
    except OSError as exc:
        raise NodeError(f"cannot reach the IPFS API at {api}: {exc.strerror or exc}") from None
    return sock, url.path


def post(api: str, command: str, opts: dict[str, str], body: Iterable[bytes], headers: dict[str, str],
         *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """POST ``body`` to ``/api/v0/<command>?opts`` and yield the answer's JSON lines as they arrive."""
    sock, base = _connect(api, timeout)
    query = urllib.parse.urlencode({**opts, "stream-channels": "true"})
    head = [f"POST {base}{command}?{query} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked",
            "Connection: close", *(f"{k}: {v}" for k, v in headers.items()
                                   if k.lower() not in ("content-length", "transfer-encoding"))]
    failed: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            for chunk in body:
                if chunk:  # chunked transfer encoding, without copying the chunk
                    sock.sendall(b"%x\r\n" % len(chunk))
                    sock.sendall(chunk)
                    sock.sendall(b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except BaseException as exc:  # handed to the reading side
            failed.append(exc)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, name=f"upload-{command}", daemon=True)
    sender.start()
    try:
        resp = http.client.HTTPResponse(sock, method="POST")
        try:
            resp.begin()
            if resp.status != 200:
                text = resp.read().decode(errors="replace")
                try:
                    message = str(json.loads(text).get("Message", text))
                except ValueError:
                    message = text.strip()
                raise NodeError(f"IPFS {command} failed: {message[:300] or resp.status}")
            for line in resp:
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict) and event.get("Type") == "error":
                        raise NodeError(f"IPFS {command} failed: {event.get('Message')}")
                    yield event
            trailer = resp.getheader("X-Stream-Error")
            if trailer:
                raise NodeError(f"IPFS {command} failed: {trailer}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise NodeError(f"IPFS {command} failed: {failed[0] if failed else exc}") from None
        finally:
            resp.close()
        sender.join(timeout)
        if failed:
            raise NodeError(f"IPFS {command}: the upload failed: {failed[0]}")
    finally:
        sock.close()


class Session:
    """Small RPC calls in a row over ONE kept-alive connection to the API (``TCP_NODELAY``, the whole
    request in one write). For hundreds of calls in a row (``files cp`` of every changed file in a
    republish), where ipfshttpclient's per-call overhead (a few ms on a loaded host) adds up."""

    def __init__(self, api: str, *, timeout: float | None = None) -> None:
        self.api = api
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._base = ""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None or self._conn.sock is None:
            sock, self._base = _connect(self.api, self.timeout)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = http.client.HTTPConnection("127.0.0.1", timeout=self.timeout)
            conn.sock = sock  # already connected (TCP or unix socket): http.client uses it as is
            self._conn = conn
        return self._conn

    def call(self, command: str, args: Iterable[str] = (), opts: dict[str, str] | None = None) -> list[Any]:
        """POST ``/api/v0/<command>`` with ``args`` and ``opts``; the answer's JSON values, in order."""
        query = urllib.parse.urlencode([*(("arg", a) for a in args), *(opts or {}).items()])
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", f"{self._base}{command}?{query}", body=b"",
                             headers={"Host": "127.0.0.1", "Content-Length": "0"})
                resp = conn.getresponse()
                text = resp.read().decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # a kept-alive connection the daemon closed meanwhile: once more on a new one
                if attempt == 1 and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                     ConnectionResetError)):
                    continue
                raise NodeError(f"IPFS {command} failed: {exc}") from None
            if resp.will_close:
                self.close()
            break
        if resp.status != 200:
            try:
                message = str(json.loads(text).get("Message", text))
            except (ValueError, AttributeError):
                message = text.strip()
            raise NodeError(f"IPFS {command} failed: {message[:300] or resp.status}")
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            raise NodeError(f"IPFS {command} answered something that is not JSON: {text[:200]!r}") from None
