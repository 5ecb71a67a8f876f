"""The exceptions attn-search raises.

One root, ``AttnSearchError``; each leaf is also the built-in exception a caller would expect,
so ``except ValueError`` keeps working for bad input.
"""

from __future__ import annotations

__all__ = [
    "AttnSearchError",
    "ConfigError",
    "DatasetError",
    "SearchSpaceError",
    "TrialFailedError",
    "MemoryBudgetError",
    "RunDirError",
]


class AttnSearchError(Exception):
    """Base class of every error attn-search raises on purpose."""


class ConfigError(AttnSearchError, ValueError):
    """A run configuration or command-line argument is invalid."""


class DatasetError(AttnSearchError, ValueError):
    """A dataset spec, file or folder cannot be turned into train/val/test data."""


class SearchSpaceError(AttnSearchError, ValueError):
    """A search space (YAML file or dict) is invalid."""


class RunDirError(AttnSearchError, ValueError):
    """A run folder cannot be used (it holds another run, or is not a run folder)."""


class TrialFailedError(AttnSearchError, RuntimeError):
    """One trial failed; the search records it and goes on."""


class MemoryBudgetError(TrialFailedError):
    """A configuration's attention maps would not fit the memory budget."""
