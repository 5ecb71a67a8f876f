"""Search engines behind one interface: Optuna and KerasTuner.

```python
from attn_search.engines import get_engine

engine = get_engine("optuna", sampler="tpe", pruner="median")   # or "keras-tuner", tuner="bayesian"
```

`Engine` (in `base`) is the small interface the runner drives: `open`, `ask`, `tell`,
`interrupt`, `records`, `n_counted`, `close`. Neither Optuna nor KerasTuner is imported until
an engine is opened.
"""

from attn_search.engines.base import (
    ENGINES,
    STATUSES,
    Engine,
    EngineTrial,
    TrialPlan,
    get_engine,
)
from attn_search.engines.keras_tuner import TUNERS, KerasTunerEngine
from attn_search.engines.optuna import PRUNERS, SAMPLERS, OptunaEngine, OptunaHyperParameters

__all__ = [
    "ENGINES",
    "STATUSES",
    "TUNERS",
    "SAMPLERS",
    "PRUNERS",
    "Engine",
    "EngineTrial",
    "TrialPlan",
    "get_engine",
    "OptunaEngine",
    "OptunaHyperParameters",
    "KerasTunerEngine",
]
