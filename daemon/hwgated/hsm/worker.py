"""The worker process: one PKCS#11 application with one logged-in session for its life.

Started by the pool with the "spawn" context (a fresh interpreter: nothing of
the daemon's threads or gRPC state is inherited). It reads its init frame and
the PIN frame from its socket, loads the module, finds the token, logs in,
wipes the PIN and reports ready (or why not). Then it serves requests one at a
time: python-pkcs11 initializes the module without OS locking, so one thread
per process is what keeps the module safe. A crash or hang here costs this
process only; the pool replaces it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import syslog
from collections.abc import Callable
from typing import Any

import pkcs11
from pkcs11 import exceptions as p11

from hwgated.hsm import p11derive, p11manage, p11wrap
from hwgated.hsm.errors import (
    HsmError,
    HsmUnavailable,
    HwgateError,
    InvalidArgument,
    KeyNotFound,
    error_to_wire,
)
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.p11errors import STALE_HANDLE, is_fatal, translate, translate_login
from hwgated.hsm.p11keys import KeyStore, key_info, public_key_der
from hwgated.hsm.p11sign import make_signer
from hwgated.hsm.types import SignAlgorithm
from hwgated.hsm.wire import (
    STARTUP_ID,
    EncodeError,
    encode,
    recv_frame,
    recv_message,
    send_message,
)
from hwgated.hsm.worker_init import WorkerInit

EXIT_SESSION_LOST = 3
_SIGN_CLASSES = (KeyClass.PRIVATE, KeyClass.SECRET)


def worker_main(
    sock: socket.socket, output: socket.socket | None = None, syslog_ident: str | None = None
) -> None:
    """Process entry point (the pool's Process target).

    *output* becomes fds 1 and 2, read by the daemon and logged under the token's
    name; *syslog_ident* names what the module sends to syslog(3) (hwgated.hsm.output).
    """
    if output is not None:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        output.close()
    if syslog_ident is not None:
        syslog.openlog(syslog_ident, syslog.LOG_PID, syslog.LOG_DAEMON)
    # The daemon decides when workers stop (pool.close, or EOF on the pipe if it dies):
    # a terminal's Ctrl-C or systemd's SIGTERM to the whole cgroup must not kill them
    # first, or the pool would see crashed workers and start replacements mid-shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The pool going away (closed, or it killed us) leaves nobody to report to.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        _serve(sock)


def _serve(sock: socket.socket) -> None:
    init = recv_message(sock)
    pin = recv_frame(sock)
    if init is None or pin is None:
        return
    try:
        session, token = _open_session(init, pin)
    except HwgateError as exc:
        pin[:] = bytes(len(pin))
        send_message(sock, (STARTUP_ID, False, error_to_wire(exc)))
        return
    info = {
        "pid": os.getpid(),
        "token_label": token.label,
        "token_serial": _serial_text(token.serial),
        "model": token.model,
        "manufacturer": token.manufacturer_id,
    }
    send_message(sock, (STARTUP_ID, True, info))
    # The PIN stays in this process (a bytearray, wiped on the way out) for keys with
    # CKA_ALWAYS_AUTHENTICATE, which want it again for every signature; this worker
    # is already logged in with it, so keeping it exposes nothing the session does not.
    try:
        code = WorkerServer(session, sock, pin).serve()
    finally:
        pin[:] = bytes(len(pin))
    sys.exit(code)


def _open_session(init: WorkerInit, pin: bytearray) -> tuple[Any, Any]:
    for name in init.unset_env:
        os.environ.pop(name, None)
    os.environ.update(init.env)  # before C_Initialize: modules read their config there
    try:
        lib = pkcs11.lib(init.module)
    except Exception as exc:  # any loader failure means "module unusable"
        raise HsmUnavailable(f"cannot load PKCS#11 module {init.module}: {exc}") from None
    try:
        if init.token_serial is not None:
            token = lib.get_token(token_serial=init.token_serial.encode())
        else:
            token = lib.get_token(token_label=init.token_label)
    except (p11.NoSuchToken, p11.MultipleTokensReturned) as exc:
        which = init.token_label or init.token_serial
        raise HsmUnavailable(f"token {which!r}: {type(exc).__name__}") from None
    except p11.PKCS11Error as exc:
        raise HsmUnavailable(f"cannot list tokens ({type(exc).__name__})") from None
    # python-pkcs11 takes the PIN as str; that immutable copy lives until this frame ends.
    try:
        session = token.open(rw=True, user_pin=pin.decode())
    except UnicodeDecodeError:
        raise HsmUnavailable("the PIN is not UTF-8") from None
    except p11.PKCS11Error as exc:
        raise translate_login(exc) from None
    return session, token


def _serial_text(serial: Any) -> str:
    return serial.decode(errors="replace") if isinstance(serial, bytes) else str(serial)


class WorkerServer:
    """The request loop: decode, run the op, reply; translate every failure."""

    def __init__(self, session: Any, sock: socket.socket, pin: bytearray | None = None) -> None:
        self._session = session
        self._sock = sock
        self._pin = pin
        self._store = KeyStore(session)
        self._ops: dict[str, Callable[..., Any]] = {
            "sign": self.sign,
            "sign_many": self.sign_many,
            "get_public_key": lambda ref: public_key_der(self._store, ref),
            "describe": lambda ref, classes: key_info(self._store.find(ref, classes).obj),
            "list_keys": lambda: p11manage.list_keys(self._store),
            "derive_ecdh": lambda *a, **k: p11derive.derive_ecdh(self._store, *a, **k),
            "derive_diversified": lambda *a, **k: p11derive.derive_diversified(
                self._store, *a, **k
            ),
            "generate_key_pair": lambda *a: p11manage.generate_key_pair(
                self._session, self._store, *a
            ),
            "generate_secret_key": lambda *a: p11manage.generate_secret_key(
                self._session, self._store, *a
            ),
            "delete_key": lambda ref: p11manage.delete_key(self._store, ref),
            "wrap_key": lambda *a: p11wrap.wrap_key(self._store, *a),
            "unwrap_key": lambda *a, **k: p11wrap.unwrap_key(self._store, *a, **k),
            "rewrap_for_peer": lambda *a: p11wrap.rewrap_for_peer(self._session, self._store, *a),
            "invalidate": self._store.invalidate,
            "ping": lambda: os.getpid(),
        }

    def serve(self) -> int:
        """Serve until the parent closes the socket; the exit code for the process."""
        while True:
            message = recv_message(self._sock)
            if message is None:
                return 0
            request_id, op, args, kwargs = message
            reply, fatal = self._run(op, args, kwargs)
            if request_id is not None:
                try:
                    frame = encode((request_id, *reply))
                except EncodeError:  # a result outside the wire schema: a bug here
                    error = HsmError(f"internal error ({op} result not encodable)")
                    frame = encode((request_id, False, error_to_wire(error)))
                self._sock.sendall(frame)
            if fatal:
                return EXIT_SESSION_LOST

    def _run(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, bool]:
        handler = self._ops.get(op)
        if handler is None:
            return (False, error_to_wire(InvalidArgument(f"unknown worker op {op!r}"))), False
        for attempt in (1, 2):
            try:
                return (True, handler(*args, **kwargs)), False
            except HwgateError as exc:
                return (False, error_to_wire(exc)), False
            except STALE_HANDLE:
                # Another worker deleted the object behind a cached handle.
                self._store.invalidate()
                if attempt == 2:
                    return (False, error_to_wire(KeyNotFound("the key was deleted"))), False
            except p11.PKCS11Error as exc:
                return (False, error_to_wire(translate(exc))), is_fatal(exc)
            except Exception as exc:  # a bug must not kill the session
                # Only the type: an exception text could quote request data.
                print(f"hwgate hsm worker: {op} failed: {type(exc).__name__}", file=sys.stderr)
                error = HsmError(f"internal error ({type(exc).__name__})")
                return (False, error_to_wire(error)), False
        raise AssertionError("unreachable")

    def sign(self, ref: KeyRef, algorithm: SignAlgorithm, data: bytes) -> bytes:
        found = self._store.find(ref, _SIGN_CLASSES)
        return make_signer(found, algorithm, self._context_pin())(data)

    def sign_many(self, ref: KeyRef, algorithm: SignAlgorithm, items: list[bytes]) -> list[bytes]:
        if not items:
            raise InvalidArgument("empty batch")
        found = self._store.find(ref, _SIGN_CLASSES)
        signer = make_signer(found, algorithm, self._context_pin())
        return [signer(item) for item in items]

    def _context_pin(self) -> Callable[[], str] | None:
        """The PIN for a context-specific login (python-pkcs11 takes it as str: that
        copy lives only for the one call), or None when this worker has none."""
        pin = self._pin
        return None if pin is None else pin.decode
