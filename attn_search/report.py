"""A run's report: ``report.md`` with tables and PNG plots, written into the run folder.

Example:

```python
from attn_search.report import write_report

path = write_report("results/digits-20260101-120000")   # -> .../report.md
```

The report holds: the run's status, times, trial counts and best trial (run.json) and its
settings (config.yaml); attention against its baselines
(``comparison.csv``); validation accuracy by family and placement (table and
``report_families.png``); the best trials; the learned gamma of each attention layer of the best
model; and the best model's attention maps on a few validation images
(``report_attention.png``). Plots are drawn with Pillow, so nothing beyond the package's own
dependencies is needed. A part that cannot be made (e.g. no attention layer in the best model)
is replaced by a line that says why; the rest of the report is still written. The run folder
is read through `attn_search.runfolder.RunFolder` and its documented schema (`RUN_SCHEMA`).
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

from attn_search._atomic import write_text_atomic
from attn_search._report_plots import attention_figure, bar_chart
from attn_search.formatting import format_cell, frame_cells, markdown_table
from attn_search.runfolder import RunFolder

__all__ = ["write_report"]

#: run.json's timings (`RUN_SCHEMA`), in the order the "Run" table shows them.
_TIMINGS = ("search_seconds", "finalists_seconds", "total_seconds")
#: The leaderboard columns of the "best trials" table (gamma_* follow).
_TOP_COLUMNS = (
    "trial_id",
    "family",
    "placement",
    "status",
    "best_val_accuracy",
    "best_val_loss",
    "params",
    "epochs",
    "train_seconds",
)


def write_report(
    run_dir: str | os.PathLike | Any,
    *,
    images: Any = None,
    num_images: int = 4,
    top: int = 10,
) -> pathlib.Path:
    """Writes ``report.md`` and its plots into a run folder.

    Args:
        run_dir: a run folder written by `attn_search.run_search`, or a `RunResult`.
        images: float32 images in [0, 1], `(N, H, W, C)`, for the attention maps. Defaults to
            `None`: the first validation images of the run's dataset (as config.yaml describes
            it).
        num_images: how many images the attention maps show. Defaults to 4.
        top: how many trials the "best trials" table shows. Defaults to 10.

    Returns:
        The path of ``report.md``.

    Raises:
        RunDirError: `run_dir` does not exist or is not a run folder.
    """
    folder = RunFolder.existing(run_dir)
    config = folder.read_config() or {}
    leaderboard = folder.read_table("leaderboard")

    lines = [f"# attn-search report: {folder.path.name}", ""]
    lines += _settings_section(config, folder.read_run_info())
    comparison = folder.read_table("comparison")
    lines += _verdict_section(comparison)
    lines += _comparison_section(comparison)
    lines += _families_section(leaderboard, folder)
    lines += _top_section(leaderboard, top)
    lines += _model_sections(folder, config, images, num_images)
    path = folder.report_path("report.md")
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


# --------------------------------------------------------------------------- tables
def _markdown(df: Any) -> list[str]:
    """A DataFrame as a markdown table: floats to 4 significant digits, missing cells empty."""
    return markdown_table(*frame_cells(df, missing="", significant=4, markdown=True))


def _md(value: Any, missing: str = "") -> str:
    return format_cell(value, missing=missing, significant=4, markdown=True)


# --------------------------------------------------------------------------- sections
def _settings_section(config: dict, info: dict) -> list[str]:
    """The run's state from run.json (`RUN_SCHEMA`), then its settings from config.yaml."""
    rows = _run_rows(info)
    for key, value in config.items():
        if not isinstance(value, (dict, list)):
            rows.append((key, _md(value, missing="None")))
        elif key in ("dataset", "space", "engine") and isinstance(value, dict):
            name = value.get("name") or value.get("spec") or value.get("source")
            if name is not None:
                rows.append((key, _md(name)))
    if not rows:
        return []
    return ["## Run", "", *markdown_table(["setting", "value"], rows), ""]


def _run_rows(info: dict) -> list[tuple[str, str]]:
    """run.json's status, times, trial counts and best trial, as (setting, cell) rows."""
    from attn_search.engines import STATUSES
    from attn_search.leaderboard import placement_label

    rows = []
    if info.get("status"):
        rows.append(("status", _md(info["status"])))
    sessions = [s for s in info.get("sessions") or [] if isinstance(s, dict)]
    if sessions and sessions[0].get("started_at"):
        rows.append(("started_at", _md(sessions[0]["started_at"])))
    if info.get("updated_at"):
        rows.append(("updated_at", _md(info["updated_at"])))
    if len(sessions) > 1:
        rows.append(("sessions", f"{len(sessions)} (the run was resumed; times: the last)"))
    timings = info.get("timings") if isinstance(info.get("timings"), dict) else {}
    for key in _TIMINGS:
        if isinstance(timings.get(key), (int, float)):
            rows.append((key, format_cell(float(timings[key]), key)))
    counts = info.get("trials") if isinstance(info.get("trials"), dict) else {}
    if counts:
        order = sorted(counts, key=lambda k: (STATUSES.index(k) if k in STATUSES else 99, k))
        rows.append(("trials", _md(", ".join(f"{counts[k]} {k}" for k in order))))
    if info.get("stopped_by"):
        rows.append(("stopped_by", _md(info["stopped_by"])))
    best = info.get("best_trial")
    if isinstance(best, dict) and best.get("trial_id") is not None:
        text = (
            f"#{best['trial_id']} {best.get('family')}, placement "
            f"{placement_label(best.get('placements'))}, best_val_accuracy "
            f"{format_cell(best.get('best_val_accuracy'), 'best_val_accuracy')}"
        )
        rows.append(("best_trial", _md(text)))
    return rows


def _verdict_section(comparison: Any) -> list[str]:
    from attn_search.comparison import verdict_sentences

    lines = ["## Verdict", ""]
    if comparison is None or not len(comparison):
        return lines + ["No comparison.csv yet (the run has not reached its finalists).", ""]
    lines += [f"- {line}" for line in verdict_sentences(comparison)]
    return lines + [
        "",
        "Each sentence: attention minus the baseline twin, in points of test accuracy, its 95% "
        "interval, the seeds both finished, and the p-value adjusted (Holm) over every "
        "comparison of the run.",
        "",
    ]


def _comparison_section(comparison: Any) -> list[str]:
    lines = ["## Attention against its baselines", ""]
    if comparison is None or not len(comparison):
        return lines + ["No comparison.csv yet (the run has not reached its finalists).", ""]
    lines += [
        "From `comparison.csv`. Search rows: validation accuracy per family and placement. "
        "Finalist rows: test accuracy over repeated seeds, each baseline twin trained on the "
        "same seeds as its attention model; `diff_mean` is attention minus that baseline, paired "
        "over the seeds (positive: attention wins), with its interval, `p_adjusted` and the "
        "`verdict`.",
        "",
    ]
    if "section" not in comparison.columns:
        return lines + _markdown(comparison) + [""]
    titles = {"family": "By family", "placement": "By placement", "finalist": "Finalists"}
    for section, part in comparison.groupby("section", sort=False):
        part = part.drop(columns=["section"]).dropna(axis=1, how="all")
        part = part.loc[:, [c for c in part.columns if part[c].astype(str).str.len().any()]]
        lines += [f"### {titles.get(str(section), str(section))}", ""]
        lines += _markdown(part) + [""]
    return lines


def _families_section(leaderboard: Any, folder: RunFolder) -> list[str]:
    lines = ["## Validation accuracy by family and placement", ""]
    if leaderboard is None or not len(leaderboard):
        return lines + ["No trials in leaderboard.csv yet.", ""]
    df = leaderboard[leaderboard["status"] == "complete"]
    if not len(df):
        return lines + ["No complete trial yet.", ""]
    keys = ["family", "placement"]
    df = df.assign(**{k: df[k].map(lambda v: format_cell(v)) for k in keys})
    label = "val accuracy"
    best, mean = f"best {label}", f"mean {label}"
    grouped = df.groupby(keys, sort=True)["best_val_accuracy"].agg(["count", "max", "mean"])
    grouped = grouped.reset_index().rename(columns={"count": "trials", "max": best, "mean": mean})
    grouped = grouped.sort_values(best, ascending=False, kind="stable")
    lines += _markdown(grouped) + [""]
    bars = [
        (" / ".join(str(row[k]) for k in keys), float(row[best]), float(row[mean]))
        for _, row in grouped.iterrows()
    ]
    path = folder.report_path("report_families.png")
    try:
        bar_chart(bars, path, title=f"{label}: best (bar) and mean (line)")
        lines += [f"![{label} by family and placement]({path.name})", ""]
    except Exception as exc:  # noqa: BLE001 - a plot must not cost the report
        lines += [f"(plot skipped: {type(exc).__name__}: {exc})", ""]
    return lines


def _top_section(leaderboard: Any, top: int) -> list[str]:
    lines = [f"## Best {top} trials", ""]
    if leaderboard is None or not len(leaderboard):
        return lines + ["No trials yet.", ""]
    gammas = [c for c in leaderboard.columns if str(c).startswith("gamma_")]
    columns = [c for c in (*_TOP_COLUMNS, *gammas) if c in leaderboard.columns]
    table = leaderboard[columns].head(top)
    lines += ["All trials, every status, are in `leaderboard.csv`.", ""]
    return lines + _markdown(table) + [""]


def _model_sections(folder: RunFolder, config: dict, images: Any, num_images: int) -> list[str]:
    gamma_lines = ["## Learned gamma (best model)", ""]
    map_lines = ["## Attention maps (best model)", ""]
    if not folder.best_model_path.is_file():
        note = [f"No {folder.best_model_path.name} yet.", ""]
        return gamma_lines + note + map_lines + note
    try:
        from attn_search.export import load_best_model
        from attn_search.layers import SelfAttentionConv2D

        model = load_best_model(folder.path)
        layers = [x for x in _all_layers(model) if isinstance(x, SelfAttentionConv2D)]
    except Exception as exc:  # noqa: BLE001
        note = [f"(best model could not be loaded: {type(exc).__name__}: {exc})", ""]
        return gamma_lines + note + map_lines + note
    if not layers:
        note = ["The best model has no attention layer (a baseline won).", ""]
        return gamma_lines + note + map_lines + note

    rows = [
        [
            _md(layer.name),
            _md(layer.num_heads),
            _md(getattr(layer, "kv_pool", 1)),
            _md(tuple(layer.input.shape)[1:]),
            _md(float(_to_numpy(layer.gamma))),
        ]
        for layer in layers
    ]
    gamma_lines += [
        "gamma scales each attention branch (`y = shortcut(x) + gamma * attention`); it is "
        "learned, so its size after training shows how much the model chose to use attention.",
        "",
        *markdown_table(["layer", "heads", "kv_pool", "input", "learned gamma"], rows),
        "",
    ]

    try:
        if images is None:
            images = _validation_images(config, num_images)
        images = _to_numpy(images)[:num_images].astype("float32")
        maps = [_attention_map(model, layer, images) for layer in layers]
        path = folder.report_path("report_attention.png")
        attention_figure(images, maps, [x.name for x in layers], path)
        map_lines += [
            "Each row is a validation image; each further column, one attention layer: where "
            "its queries look on average (mean over heads and query positions), brighter is "
            "more attention.",
            "",
            f"![attention maps]({path.name})",
            "",
        ]
    except Exception as exc:  # noqa: BLE001 - maps are a bonus; say why they are missing
        map_lines += [f"(attention maps skipped: {type(exc).__name__}: {exc})", ""]
    return gamma_lines + map_lines


# --------------------------------------------------------------------------- model helpers
def _all_layers(model: Any) -> list:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _to_numpy(value: Any) -> Any:
    import numpy as np

    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    try:
        import keras

        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:  # noqa: BLE001
        return np.asarray(value)


def _validation_images(config: dict, n: int) -> Any:
    """The first `n` validation images of the run's dataset, as config.yaml describes it."""
    from attn_search.datasets import load_dataset

    section = config.get("dataset")
    kwargs: dict[str, Any] = {}
    if isinstance(section, dict):
        spec = section.get("spec") or section.get("name") or section.get("source")
        for key in ("limit", "image_size", "seed", "val_fraction", "test_fraction"):
            if section.get(key) is not None:
                kwargs[key] = section[key]
    else:
        spec = section
    for key in ("limit", "image_size", "seed"):
        if key not in kwargs and config.get(key) is not None:
            kwargs[key] = config[key]
    if "image_size" in kwargs:
        kwargs["image_size"] = tuple(kwargs["image_size"])
    if not spec:
        raise ValueError("config.yaml does not name the dataset")
    dataset = load_dataset(spec, **kwargs)
    for x, _ in dataset.val(n).take(1):
        return _to_numpy(x)
    raise ValueError("the validation split is empty")


def _attention_map(model: Any, layer: Any, images: Any) -> Any:
    """(N, Hk, Wk): the layer's attention, averaged over heads and query positions."""
    import keras
    import numpy as np

    features = keras.Model(model.input, layer.input)(images)
    _, scores = layer(features, return_attention_scores=True)  # (N, heads, HW, S)
    scores = _to_numpy(scores).mean(axis=(1, 2))  # (N, S)
    height, width = int(features.shape[1]), int(features.shape[2])
    pool = int(getattr(layer, "kv_pool", 1) or 1)
    hk, wk = math.ceil(height / pool), math.ceil(width / pool)
    if hk * wk != scores.shape[-1]:
        side = int(round(math.sqrt(scores.shape[-1])))
        hk, wk = side, scores.shape[-1] // side
    return np.asarray(scores).reshape(len(images), hk, wk)


# --------------------------------------------------------------------------- drawing (Pillow)
