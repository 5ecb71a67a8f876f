"""Ctrl-C that a library turned into another error: remembered, so it still stops the run.

TensorFlow's conversion of a Python sequence to a tensor (in C++) replaces an exception
raised meanwhile, a pending `KeyboardInterrupt` included, by a `TypeError`; a trial would then
fail alone and the search go on. A worker of `attn-search run --workers N` gets Ctrl-C once
(forwarded by its parent), so it installs `install()`'s handler, and the places that let one
trial or fit fail alone call `raise_if_interrupted` first.
"""

from __future__ import annotations

import signal

_received = False


def _handler(signum, frame) -> None:
    global _received
    _received = True
    raise KeyboardInterrupt


def install() -> None:
    """Makes Ctrl-C (SIGINT) raise `KeyboardInterrupt`, as Python's default, and remember it."""
    signal.signal(signal.SIGINT, _handler)


def raise_if_interrupted(error: BaseException) -> None:
    """Raises `KeyboardInterrupt` (from `error`) if Ctrl-C came while this process ran."""
    if _received:
        raise KeyboardInterrupt from error
