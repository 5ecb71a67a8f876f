"""Progress output: an observer of the run's events that prints, and never decides anything.

The search and finalist stages call the `Progress` methods (`search_started`,
`trial_finished`, `finalists_started`, `finalist_finished`, `note`, and `fit_progress` after
every training batch); `ProgressPrinter` prints one line per event, and on an interactive
terminal one refreshing line within a fit. A different observer (a log, a notebook widget)
implements the same methods.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from attn_search.errors import AttnSearchError

__all__ = ["Progress", "ProgressPrinter", "error_text", "short_config", "shorten"]


class Progress:
    """The events of a run; every method does nothing by default."""

    def note(self, text: str) -> None:
        """A one-line message (resume, time budget, report skipped...)."""

    def search_started(self, text: str) -> None:
        """The search begins (or resumes): `text` says what and where."""

    def trial_finished(
        self, k: int, record: Mapping[str, Any], best: Mapping[str, Any] | None, seconds: float
    ) -> None:
        """Search trial `k` (from 1) ended with `record`; `best` is the best trial so far."""

    def finalists_started(self, text: str) -> None:
        """The finalist stage begins: `text` says how many fits."""

    def finalist_finished(self, text: str, done: int, total: int, elapsed: float) -> None:
        """Finalist fit `done` of `total` ended; `text` is its result in short."""

    def fit_progress(
        self, epoch: int, epochs: int, batch: int, batches: int | None, seconds: float
    ) -> None:
        """A training batch ended: `batch` of `batches` (or `None`: unknown) in `epoch` of
        `epochs` (both from 1), `seconds` after the epoch began."""


class ProgressPrinter(Progress):
    """One line per trial: k of N, the configuration in short, its result, best, time left.

    Within a fit, on an interactive terminal (the stream is a TTY), one line that refreshes
    in place says where training is: `epoch 2/10 batch 120/625 | 41.3 batches/s | ~0:00:12
    left in epoch`; the next line printed replaces it. When the output is piped or `quiet`,
    nothing is printed within a fit.

    Args:
        total: The number of search trials.
        quiet: Print nothing. Defaults to `False`.
        stream: Where to print. Defaults to `sys.stdout`.
        live: Show the refreshing line within a fit. Defaults to `None`: when the stream is
            an interactive terminal.
    """

    #: Seconds between two refreshes of the line within a fit.
    refresh_seconds = 0.25

    def __init__(
        self,
        total: int,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        live: bool | None = None,
    ):
        self.total = total
        self.quiet = quiet
        self.stream = stream
        self.start = time.monotonic()
        self.done_here = 0
        self.seconds_here = 0.0
        self.live = live
        self._drawn_at: float | None = None  # when the live line was last drawn, if shown

    def print(self, text: str) -> None:
        if not self.quiet:
            self._clear_live()
            print(text, file=self.stream or sys.stdout, flush=True)

    def fit_progress(
        self, epoch: int, epochs: int, batch: int, batches: int | None, seconds: float
    ) -> None:
        if self.quiet or not self._is_live():
            return
        now = time.monotonic()
        if self._drawn_at is not None and now - self._drawn_at < self.refresh_seconds:
            return
        rate = batch / seconds if seconds > 0 else 0.0
        text = f"  epoch {epoch}/{epochs} batch {batch}"
        if batches:
            text += f"/{batches}"
        text += f" | {rate:.1f} batches/s" if rate else ""
        if batches and rate:
            text += f" | ~{clock(max(0, batches - batch) / rate)} left in epoch"
        width = shutil.get_terminal_size((100, 24)).columns - 1
        stream = self.stream or sys.stdout
        stream.write("\r" + text[:width] + "\033[K")  # \033[K: erase the rest of the line
        stream.flush()
        self._drawn_at = now

    def _is_live(self) -> bool:
        if self.live is None:
            stream = self.stream or sys.stdout
            isatty = getattr(stream, "isatty", None)
            self.live = bool(isatty and isatty())
        return self.live

    def _clear_live(self) -> None:
        if self._drawn_at is not None:
            stream = self.stream or sys.stdout
            stream.write("\r\033[K")
            self._drawn_at = None

    note = search_started = finalists_started = print

    def trial(
        self, k: int, record: Mapping[str, Any], best: Mapping[str, Any] | None, seconds: float
    ) -> None:
        self.done_here += 1
        self.seconds_here += seconds
        elapsed = time.monotonic() - self.start
        eta = self.seconds_here / self.done_here * max(0, self.total - k)
        status = record.get("status", "?")
        acc = record.get("best_val_accuracy")
        ok = isinstance(acc, (int, float)) and acc == acc
        result = f"val_acc {acc:.4f}" if ok else "val_acc -"
        if status != "complete":
            result += f" {status}"
        if status == "failed" and record.get("error"):
            result += f" ({shorten(record['error'], 60)})"
        best_text = (
            f"best {best['best_val_accuracy']:.4f} (#{best['trial_id']} {best.get('family')})"
            if best
            else "best -"
        )
        width = len(str(self.total))
        self.print(
            f"[{k:>{width}}/{self.total}] #{record.get('trial_id')} {short_config(record)} | "
            f"{result} | {best_text} | {clock(elapsed)} elapsed, ~{clock(eta)} left"
        )

    trial_finished = trial

    def finalist_finished(self, text: str, done: int, total: int, elapsed: float) -> None:
        left = clock(elapsed / done * (total - done)) if done else "?"
        self.print(f"  {text} | {done}/{total}, ~{left} left")


_SHORT_NAMES = {
    "num_heads": "heads",
    "activation": "act",
    "gamma": "gamma",
    "kv_pool": "kv_pool",
    "train/learning_rate": "lr",
    "train/batch_size": "bs",
    "backbone/blocks": "blocks",
    "backbone/filters": "filters",
}


def short_config(record: Mapping[str, Any]) -> str:
    """`attention@2 heads=2 act=relu lr=0.0031 bs=32`: a trial's configuration in short."""
    hp = dict(record.get("hp") or {})
    text = record.get("family") or "?"
    places = record.get("placements")
    if places:
        text += "@" + "+".join(str(p) for p in places)
    parts = []
    for suffix, short in _SHORT_NAMES.items():
        for name, value in hp.items():
            if name == suffix or (name.startswith("attention/") and name.endswith("/" + suffix)):
                shown = f"{value:.3g}" if isinstance(value, float) else value
                parts.append(f"{short}={shown}")
    if parts:
        text += " " + " ".join(parts[:7])
    return text


def shorten(text: str, n: int) -> str:
    """`text` on one line, cut to `n` characters with `...`."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def clock(seconds: float) -> str:
    """`h:mm:ss`."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def error_text(error: BaseException) -> str:
    """One line for a failed fit: the error's type and message, out-of-memory called so."""
    text = " ".join(str(error).split()) or "(no message)"
    name = type(error).__name__
    if name == "ResourceExhaustedError" or isinstance(error, MemoryError):
        return f"out of memory ({name}): {shorten(text, 300)}"
    if isinstance(error, AttnSearchError):
        return f"{name}: {shorten(text, 500)}"
    return f"{name}: {shorten(text, 300)}"
