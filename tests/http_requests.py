"""Plain HTTP helpers for the tests of the metrics endpoint (unit and integration)."""

from __future__ import annotations

import http.client
import socket


def request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one request to 127.0.0.1:``port``."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        con.request(method, path)
        resp = con.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        con.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything ``sock`` receives until the other side closes it."""
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)
