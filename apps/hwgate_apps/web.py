"""What both web servers share: the API error type, JSON bodies, serving on a socket."""

from __future__ import annotations

import base64
import binascii
import json
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.requests import Request

MAX_BODY = 64 * 1024


@dataclass
class ApiError(Exception):
    """A refusal: HTTP status, stable error name, human message (never a secret)."""

    status: int
    error: str
    message: str


def b64(data: bytes) -> str:
    """Bytes as the base64 text the JSON APIs carry."""
    return base64.b64encode(data).decode()


def unb64(value: Any, what: str) -> bytes:
    """A base64 field of a request; 400 ``bad_request`` naming *what* if it is not."""
    try:
        return base64.b64decode(str(value), validate=True)
    except (ValueError, binascii.Error):
        raise ApiError(400, "bad_request", f"{what} is not base64") from None


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a dict; ApiError 400/413 on anything else."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", "request body too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return body


def tls_context(
    cafile: str | None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A client TLS context trusting *cafile* (or the system store when None),
    presenting the client certificate *cert* (with *key*) when given."""
    context = ssl.create_default_context(cafile=cafile)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Bound before the server thread starts, so clients may
    connect at once (the kernel queues them): no waiting for "server started"."""
    sock = socket.create_server((host, port), reuse_port=False)
    sock.set_inheritable(True)
    return sock


@dataclass
class Served:
    """A uvicorn server running in a thread on a pre-bound socket."""

    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def serve_in_thread(app: Any, sock: socket.socket, **options: Any) -> Served:
    """Run *app* on *sock* in a daemon thread (tests, the demo, ``make kiosk``)."""
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    return Served(server, thread, sock)
