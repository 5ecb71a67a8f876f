"""attn-search: where, and how, should a self-attention layer go in your convnet?

Public surface::

    from attn_search import SelfAttentionConv2D          # the layer
    from attn_search import AttentionCNN, load_space     # KerasTuner hypermodels, search spaces
    from attn_search import load_dataset                 # datasets -> tf.data
    from attn_search import run_search, RunConfig        # the search runner

Importing the package registers the layer with Keras, so a saved model reloads with nothing but
``import attn_search``. Everything else is imported on first use, so the command line answers
``--help`` without waiting for TensorFlow.
"""

from __future__ import annotations

import importlib
import os
import sys

from attn_search.errors import (
    AttnSearchError,
    ConfigError,
    DatasetError,
    MemoryBudgetError,
    RunDirError,
    SearchSpaceError,
    TrialFailedError,
)

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily by __getattr__ (PEP 562).
_LAZY = {
    "SelfAttentionConv2D": "attn_search.layers",
    "SelfAttention_Conv2D": "attn_search.layers",
    "load_dataset": "attn_search.datasets",
    "Dataset": "attn_search.datasets",
    "DatasetInfo": "attn_search.datasets",
    "load_space": "attn_search.spaces",
    "SearchSpace": "attn_search.spaces",
    "AttentionCNN": "attn_search.hypermodels",
    "BackboneHyperModel": "attn_search._backbone_hypermodel",
    "insert_attention": "attn_search.backbones",
    "attention_points": "attn_search.backbones",
    "run_search": "attn_search.runner",
    "RunConfig": "attn_search.runner",
    "RunResult": "attn_search.runner",
    "export_model": "attn_search.export",
    "explain": "attn_search.inference",
    "predict": "attn_search.inference",
    "write_report": "attn_search.report",
}

__all__ = [
    "__version__",
    "AttnSearchError",
    "ConfigError",
    "DatasetError",
    "MemoryBudgetError",
    "RunDirError",
    "SearchSpaceError",
    "TrialFailedError",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attn_search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def _started_by_cli() -> bool:
    # The `attn-search` console script (and `python -m attn_search`) imports this package before
    # its first line runs; the CLI imports the layer itself when a command needs Keras, so
    # `--help` stays instant.
    if os.path.basename(sys.argv[0] if sys.argv else "") in {"attn-search", "attn-search.exe"}:
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b == "attn_search" for a, b in zip(argv, argv[1:], strict=False))


if not _started_by_cli():
    # Registers SelfAttentionConv2D with Keras' serialization registry (keras.saving).
    from attn_search.layers import SelfAttention_Conv2D, SelfAttentionConv2D  # noqa: E402,F401
