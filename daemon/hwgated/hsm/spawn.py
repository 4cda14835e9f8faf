"""Starting one worker process and handing it its init and PIN frames.

The PIN goes over the worker's own socket, never through argv or the
environment, and the frame holding it is wiped as soon as it is written. The
"spawn" start method gives the worker a fresh interpreter: nothing of the
daemon's threads, gRPC state or other tokens is inherited.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket

from hwgated.hsm.channel import WorkerChannel
from hwgated.hsm.config import TokenConfig
from hwgated.hsm.errors import HsmUnavailable
from hwgated.hsm.output import WorkerOutput, syslog_ident
from hwgated.hsm.wire import encode, raw_frame
from hwgated.hsm.worker import WorkerInit, worker_main

_CTX = multiprocessing.get_context("spawn")
OUTPUT_LINGER = 2.0  # seconds the output of an exited worker is still read


async def spawn_worker(config: TokenConfig, index: int, pin: bytearray) -> WorkerChannel:
    """Start worker ``index`` of ``config``'s pool; its channel (``ready`` resolves
    once it logged in). The caller wipes ``pin``."""
    parent_sock, child_sock = socket.socketpair()
    # The worker's stdout and stderr: read and logged under the token's name (hsm.output).
    output_sock, child_output = socket.socketpair()
    name = f"{config.name}/{index}"
    process = _CTX.Process(
        target=worker_main,
        args=(child_sock, child_output, syslog_ident(config.name)),
        name=f"hwgate-hsm {name}",
        daemon=True,
    )
    try:
        await asyncio.to_thread(process.start)
    except OSError as exc:
        parent_sock.close()
        output_sock.close()
        raise HsmUnavailable(f"cannot start an HSM worker: {exc.strerror}") from None
    finally:
        child_sock.close()
        child_output.close()
    loop = asyncio.get_running_loop()
    output_sock.shutdown(socket.SHUT_WR)
    _, output = await loop.create_unix_connection(
        lambda: WorkerOutput(config.name, name), sock=output_sock
    )
    output.pid = process.pid
    init = WorkerInit(
        module=config.module,
        token_label=config.token_label,
        token_serial=config.token_serial,
        env=dict(config.env),
        unset_env=(config.pin_env,) if config.pin_env else (),
    )
    frame = raw_frame(pin)
    try:
        # A fresh socketpair takes these few hundred bytes without blocking.
        parent_sock.sendall(encode(init))
        parent_sock.sendall(frame)
    except OSError:
        pass  # the worker died at once; its exit is reported through the channel
    finally:
        frame[:] = bytes(len(frame))
    _, worker = await loop.create_unix_connection(
        lambda: WorkerChannel(name, process), sock=parent_sock
    )
    # Normally EOF ends the reading when the worker exits; a child the module left
    # behind could keep the socket open, so stop reading shortly after the exit.
    worker.exited.add_done_callback(lambda _: loop.call_later(OUTPUT_LINGER, output.close))
    return worker
