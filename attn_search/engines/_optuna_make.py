"""Optuna's sampler and pruner, made from the names the command line accepts."""

from __future__ import annotations

from typing import Any


def make_sampler(sampler: Any, seed: int, trials: int, *, shared: bool = False) -> Any:
    """The sampler `sampler` names, seeded with `seed`.

    With `shared=True` (workers share the study) each process seeds its sampler with `seed`
    and its process id, or every worker would propose the same values, and TPE lies about the
    trials still running elsewhere (`constant_liar`), so workers spread out.
    """
    if not isinstance(sampler, str):
        return sampler
    import os
    import warnings

    import optuna

    if shared:
        seed = (seed * 1_000_003 + os.getpid()) % 2**31
    startup = min(10, max(3, trials // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QMC and GP are marked experimental
        if sampler == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup, constant_liar=shared
            )
        if sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
        if sampler == "qmc":
            return optuna.samplers.QMCSampler(seed=seed)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)


def make_pruner(pruner: Any, trials: int, max_epochs: int | None) -> Any:
    """The pruner `pruner` names, for `trials` trials of at most `max_epochs` epochs."""
    if not isinstance(pruner, str):
        return pruner
    import optuna

    if pruner == "median":
        # Few trials per run here: start pruning after a handful of finished trials, and
        # not in a trial's first eighth of epochs (from the first epoch on up to 15 epochs):
        # on long schedules, early epochs' accuracy says little about the last one's.
        return optuna.pruners.MedianPruner(
            n_startup_trials=min(5, max(2, trials // 4)),
            n_warmup_steps=(max_epochs or 0) // 8,
        )
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_epochs or "auto", reduction_factor=3
        )
    if pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()
