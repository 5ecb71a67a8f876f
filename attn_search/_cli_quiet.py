"""Start-up noise of TensorFlow and Keras, kept off the command line's output."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["quiet_tensorflow"]


def quiet_tensorflow(args: argparse.Namespace) -> None:
    """Keeps TensorFlow's and Keras' chatter from burying the progress lines.

    --verbose or --debug keep everything.
    """
    if getattr(args, "debug", False) or getattr(args, "verbose", 0):
        return
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. tf.function retracing
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    _import_tensorflow_quietly()


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its C++ start-up lines (oneDNN, CUDA probing) kept off stderr.

    Those lines are printed before TF_CPP_MIN_LOG_LEVEL takes effect, straight to file
    descriptor 2; they are captured here and shown only if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe prints its line here
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
