"""Seeding a fit without throwing away TensorFlow's compiled functions.

`keras.utils.set_random_seed(seed)` seeds Python's `random`, NumPy, Keras (its global seed,
from which layers draw their initializers' and dropout's seeds) and TensorFlow
(`tf.random.set_seed`). In eager mode the last one also clears the context's kernel cache, to
restart the counters of TensorFlow's *stateful* random kernels (`tf.random.uniform` without an
operation seed and the like). That cache also holds every traced function's instantiated graph
(optimized by grappler, with its executor), so the next call of a function that is reused, such
as a finalist's training step when its next seed starts (`_fused.renew_group`), optimizes
the graph again: 0.45 s for a finalist group's step and 0.1 s for its validation step on the
default job, more than half a second per group, measured.

`set_seed` seeds exactly what `keras.utils.set_random_seed` seeds, with the same values, but
keeps that cache. Nothing the runner computes depends on the counters it would reset: Keras 3's
random operations are stateless (seeded from its `SeedGenerator` states, which are model
variables), and `tf.data`'s seeded shuffling derives its seeds from the global seed, which is
set. So the weights, dropout masks and batch order are those of `keras.utils.set_random_seed`
(tested). The old way (`_reference.CLEAR_KERNELS`) calls Keras' own.
"""

from __future__ import annotations

__all__ = ["set_seed"]


def set_seed(seed: int) -> None:
    """`keras.utils.set_random_seed(seed)`, keeping TensorFlow's kernel cache (see the module)."""
    import keras

    from attn_search.runner import _reference

    try:
        from tensorflow.python import pywrap_tfe
        from tensorflow.python.eager import context
    except ImportError:  # pragma: no cover - another backend without TensorFlow
        keras.utils.set_random_seed(seed)
        return
    clear = getattr(pywrap_tfe, "TFE_ContextClearCaches", None)
    if _reference.CLEAR_KERNELS or clear is None or context.pywrap_tfe is not pywrap_tfe:
        keras.utils.set_random_seed(seed)
        return
    # TensorFlow's Context._set_global_seed clears the cache through this module attribute.
    pywrap_tfe.TFE_ContextClearCaches = _keep_cache
    try:
        keras.utils.set_random_seed(seed)
    finally:
        pywrap_tfe.TFE_ContextClearCaches = clear


def _keep_cache(_handle) -> None:
    """Stands in for `TFE_ContextClearCaches` while `set_seed` seeds TensorFlow."""
