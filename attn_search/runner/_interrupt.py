"""Ctrl-C that a library turned into another error, or that came where Python ignores an
exception: remembered, so it still stops the run.

TensorFlow's conversion of a Python sequence to a tensor (in C++) replaces an exception
raised meanwhile, a pending `KeyboardInterrupt` included, by a `TypeError`; a trial would then
fail alone and the search go on. And a `KeyboardInterrupt` raised while Python runs a garbage
collection callback (JAX registers one) or a `__del__` method is printed as "Exception
ignored" with its traceback, and the program goes on as if Ctrl-C had never come. A worker of
`attn-search run --workers N` gets Ctrl-C once (forwarded by its parent), so it installs
`install()`'s handler: there, Ctrl-C is deferred (`pending`) instead of raised, and the
training callbacks raise it at the next batch (`raise_pending`); the places that let one trial
or fit fail alone call `raise_if_interrupted` first.
"""

from __future__ import annotations

import gc
import signal

_received = False
_pending = False


def _handler(signum, frame) -> None:
    global _received, _pending
    _received = True
    if _where_exceptions_are_ignored(frame):
        _pending = True  # raised at the next batch (`raise_pending`)
        return
    raise KeyboardInterrupt


def _where_exceptions_are_ignored(frame) -> bool:
    """Whether `frame` runs inside a garbage-collection callback or a `__del__` method."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def install() -> None:
    """Makes Ctrl-C (SIGINT) raise `KeyboardInterrupt`, as Python's default, and remember it."""
    signal.signal(signal.SIGINT, _handler)


def raise_pending() -> None:
    """Raises `KeyboardInterrupt` once for a Ctrl-C that came where it would have been ignored."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


def raise_if_interrupted(error: BaseException) -> None:
    """Raises `KeyboardInterrupt` (from `error`) if Ctrl-C came while this process ran."""
    global _pending
    if _received:
        _pending = False  # delivered here
        raise KeyboardInterrupt from error
