"""Reading a secret (a PIN) for a CLI verb: from a file, one line of stdin, or the terminal.

Never from argv (other users see it in ``ps``). Each way fails with one clean
line (``SecretInputError``, exit 1) instead of a traceback:

- ``--pin-stdin``: one line, no prompt; end of input or an empty line is an error.
- ``--pin-file FILE``: the file's first line.
- neither: a prompt without echo on the controlling terminal. Without one
  (a script, a pipe, a service) there is nobody to ask, so the error says to use
  ``--pin-stdin`` rather than letting ``getpass`` fall back to reading stdin
  with a ``GetPassWarning`` (and an ``EOFError`` when stdin is closed).

The value is a bytearray so the caller can wipe it after use.
"""

from __future__ import annotations

import getpass
import os
import sys
import warnings

TTY = "/dev/tty"


class SecretInputError(ValueError):
    """The secret could not be read; the message is the whole story (no secret in it)."""


def read_secret(name: str, *, file: str | None = None, stdin: bool = False) -> bytearray:
    """The secret *name* (e.g. "PIN") from *file*, stdin or the terminal; caller wipes it."""
    if file:
        value = _from_file(name, file)
    elif stdin:
        value = _from_stdin(name)
    else:
        value = _from_terminal(name)
    if not value:
        raise SecretInputError(f"empty {name}")
    return value


def _strip_line(raw: bytearray) -> bytearray:
    """The first line without its line ending (the rest is wiped)."""
    end = raw.find(b"\n")
    if end >= 0:
        raw[end:] = bytes(len(raw) - end)
        del raw[end:]
    while raw[-1:] == b"\r":
        raw[-1] = 0
        del raw[-1]
    return raw


def _from_file(name: str, path: str) -> bytearray:
    try:
        with open(path, "rb") as f:
            raw = bytearray(f.read())
    except OSError as exc:
        raise SecretInputError(f"cannot read the {name} file {path}: {exc.strerror}") from None
    return _strip_line(raw)


def _from_stdin(name: str) -> bytearray:
    stream = sys.stdin
    if stream is None:  # started with stdin closed (``<&-``)
        raise SecretInputError(f"--{name.lower()}-stdin: stdin is closed")
    source = getattr(stream, "buffer", None)
    try:
        raw = bytearray(source.readline() if source is not None else stream.readline().encode())
    except (OSError, ValueError) as exc:  # ValueError: the stream is closed
        raise SecretInputError(f"--{name.lower()}-stdin: cannot read stdin: {exc}") from None
    if not raw:
        raise SecretInputError(f"--{name.lower()}-stdin: no {name} on stdin (end of input)")
    return _strip_line(raw)


def has_terminal() -> bool:
    """Whether a controlling terminal can be opened for a prompt."""
    try:
        fd = os.open(TTY, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _from_terminal(name: str) -> bytearray:
    hint = f"use --{name.lower()}-stdin (one line on stdin) or --{name.lower()}-file"
    if not has_terminal():
        raise SecretInputError(f"no terminal to ask for the {name}; {hint}")
    with warnings.catch_warnings():
        # getpass falls back to stdin with a warning if the terminal vanished meanwhile.
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        try:
            text = getpass.getpass(f"{name}: ")
        except EOFError:
            raise SecretInputError(f"no {name} entered (end of input)") from None
    return bytearray(text.encode("utf-8"))
