"""Why a connection failed, told in one line, and as early as it is certain.

grpc only reports "not ready yet" and keeps retrying until ``--connect-timeout``,
so by itself a typo in a socket path or ``--plaintext`` against the TLS port
costs the whole timeout and ends in "cannot connect". This module answers the
question a user asks next:

- ``unix_problem``: a Unix socket path that does not exist (or is no socket, or
  its directory is closed to the caller) is certain before any connection
  attempt, so the CLI fails at once instead of waiting.
- ``tcp_problem``: after grpc reported a failed attempt, one probe connection
  tells a port that is closed, a TLS port reached with ``--plaintext``, and a
  plaintext port reached with TLS. It reads the server's first answer to a TLS
  ClientHello; it never sends a certificate or a request.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat

PROBE_TIMEOUT = 2.0


def unix_path(uri: str) -> str | None:
    """The file system path of a ``unix:`` target (None: abstract socket or TCP)."""
    if not uri.startswith("unix:"):
        return None
    path = uri[len("unix:") :]
    if path.startswith("//"):
        path = path[2:]
    return path


def unix_problem(uri: str) -> str | None:
    """Why *uri* cannot be a reachable Unix socket, or None if it may be."""
    path = unix_path(uri)
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"no socket at {path}: is hwgated running, and is that its [[listen]] unix path?"
    except PermissionError:
        return f"permission denied on {path}: the caller must be in the socket's group"
    except OSError as exc:
        return f"cannot use {path}: {exc.strerror}"
    if not stat.S_ISSOCK(mode):
        return f"{path} is not a socket"
    return None


def _tls_probe(host: str, port: int, timeout: float) -> str:
    """'tls', 'plaintext', 'refused' or 'unknown': what listens on host:port."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "unknown"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(timeout)
            return "tls"  # handshake done (TLS 1.3 checks the client certificate later)
    except ssl.SSLError as exc:
        # An alert (e.g. certificate required) is a TLS server talking; a record that is
        # no TLS at all (an HTTP/2 server's GOAWAY) is a plaintext server.
        text = f"{exc.reason or ''} {exc}".upper()
        if "ALERT" in text:
            return "tls"
        if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER" in text or "PACKET_LENGTH" in text:
            return "plaintext"
        return "unknown"
    except OSError as exc:  # closed during the handshake: a plaintext server gave up
        if exc.errno in (errno.ECONNRESET, None) or isinstance(exc, ssl.SSLEOFError):
            return "plaintext"
        return "unknown"
    finally:
        raw.close()


def tcp_problem(host: str, port: int, *, plaintext: bool, timeout: float = PROBE_TIMEOUT) -> str:
    """A hint for a TCP target that did not connect, or "" when the probe cannot tell."""
    found = _tls_probe(host, port, timeout)
    where = f"{host}:{port}"
    if found == "refused":
        return f"connection refused: nothing listens on {where}"
    if plaintext and found == "tls":
        return f"{where} speaks TLS: drop --plaintext and give --cacert, --cert and --key"
    if not plaintext and found == "plaintext":
        return f"{where} speaks plaintext, not TLS: add --plaintext (loopback, insecure = true)"
    return ""


def first_address(uri: str) -> tuple[str, int] | None:
    """host and port of the first address of a TCP target URI (dns:///, ipv4:, ipv6:)."""
    body = uri.split(":", 1)[1] if uri.startswith(("dns:", "ipv4:", "ipv6:")) else uri
    first = body.lstrip("/").split(",")[0]
    if "/" in first:  # dns://AUTHORITY/host:port
        first = first.rsplit("/", 1)[1]
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def unix_refused(uri: str) -> str:
    """A hint when a Unix socket file exists but nothing accepts on it (a stale file)."""
    path = unix_path(uri)
    if path is None:
        return ""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(PROBE_TIMEOUT)
        try:
            s.connect(path)
        except ConnectionRefusedError:
            return f"nothing accepts on {path}: a stale socket file of a stopped hwgated?"
        except OSError:
            return ""
    return ""


def diagnose(uri: str, tcp: bool, *, plaintext: bool) -> str:
    """The best one-line hint for a target that did not become ready ("" if none)."""
    if not tcp:
        return unix_problem(uri) or unix_refused(uri)
    address = first_address(uri)
    return tcp_problem(*address, plaintext=plaintext) if address else ""


def is_certain(hint: str) -> bool:
    """Whether waiting longer cannot help (a protocol mismatch, not a daemon starting)."""
    return "speaks" in hint
