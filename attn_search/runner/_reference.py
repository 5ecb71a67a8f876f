"""The code paths from before the whole job was sped up (issue 14), kept reachable for
`benchmarks/bench_main_job.py` and the tests only: never for users. `use(True)` switches all
of them on, `use(False)` off (the default).

- `SOLO_FINALISTS`: each finalist network fitted alone, one after the other, in the order
  (finalist, family, seed), instead of a finalist's networks for one seed trained together;
- `TRACE_IN_FIT`: a fit leaves the optimizer's and the compiled metrics' variables to be
  created inside the first trace of the training step (TensorFlow then traces it twice);
- `GC_UNFROZEN`: no `gc.freeze()` during the run, so every `keras.backend.clear_session()`
  (one per trial) walks the whole heap of TensorFlow's modules;
- `KERAS_UPDATES`: the optimizer updates each variable with Keras' own operations instead of
  TensorFlow's fused training kernels (`attn_search.runner._kernel_updates`);
- `CLEAR_KERNELS`: seeding a fit clears TensorFlow's kernel cache (`keras.utils.set_random_seed`),
  so a reused traced function is optimized again (`attn_search.runner._seeds`);
- `KERAS_STEP_FUNCTIONS`: Keras' own training and evaluation functions (two nested traced
  functions and an Optional per step) instead of one direct function each
  (`attn_search.runner._step_functions`);
- `GRAPPLER`: TensorFlow's graph optimizer stays on for a run on a machine without a GPU
  (`attn_search.runner._compute.graph_optimizer_off_on_cpu`).
"""

from __future__ import annotations

SOLO_FINALISTS = False
TRACE_IN_FIT = False
GC_UNFROZEN = False
KERAS_UPDATES = False
CLEAR_KERNELS = False
KERAS_STEP_FUNCTIONS = False
GRAPPLER = False


def use(old: bool) -> None:
    """Switches every reference path on (`True`) or off (`False`)."""
    global SOLO_FINALISTS, TRACE_IN_FIT, GC_UNFROZEN, KERAS_UPDATES, CLEAR_KERNELS
    global KERAS_STEP_FUNCTIONS, GRAPPLER
    SOLO_FINALISTS = TRACE_IN_FIT = GC_UNFROZEN = KERAS_UPDATES = CLEAR_KERNELS = bool(old)
    KERAS_STEP_FUNCTIONS = GRAPPLER = bool(old)
