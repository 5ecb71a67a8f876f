"""A run's report: ``report.md`` with tables and PNG plots, written into the run folder.

Example:

```python
from attn_search.report import write_report

path = write_report("results/digits-20260101-120000")   # -> .../report.md
```

The report holds: the run's settings and status; attention against its baselines
(``comparison.csv``); validation accuracy by family and placement (table and
``report_families.png``); the best trials; the learned gamma of each attention layer of the best
model; and the best model's attention maps on a few validation images
(``report_attention.png``). Plots are drawn with Pillow, so nothing beyond the package's own
dependencies is needed. A part that cannot be made (e.g. no attention layer in the best model)
is replaced by a line that says why; the rest of the report is still written.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from attn_search._atomic import atomic_path, write_text_atomic
from attn_search.errors import RunDirError

__all__ = ["write_report"]

REPORT = "report.md"
FAMILIES_PNG = "report_families.png"
ATTENTION_PNG = "report_attention.png"
_RUN_MARKERS = ("run.json", "config.yaml", "leaderboard.csv", "best_model.keras")


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
    run_dir = pathlib.Path(getattr(run_dir, "run_dir", run_dir)).expanduser()
    if not run_dir.is_dir():
        raise RunDirError(f"`run_dir` does not exist. Received: run_dir='{run_dir}'")
    if not any((run_dir / marker).exists() for marker in _RUN_MARKERS):
        raise RunDirError(
            "`run_dir` is not an attn-search run folder (it has no run.json, config.yaml, "
            f"leaderboard.csv or best_model.keras). Received: run_dir='{run_dir}'"
        )

    config = _read_yaml(run_dir / "config.yaml")
    info = _read_json(run_dir / "run.json")
    leaderboard = _read_csv(run_dir / "leaderboard.csv")
    comparison = _read_csv(run_dir / "comparison.csv")

    lines = [f"# attn-search report: {run_dir.name}", ""]
    lines += _settings_section(config, info)
    lines += _comparison_section(comparison)
    lines += _families_section(leaderboard, run_dir)
    lines += _top_section(leaderboard, top)
    lines += _model_sections(run_dir, config, images, num_images)
    path = run_dir / REPORT
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


# --------------------------------------------------------------------------- reading
def _read_yaml(path: pathlib.Path) -> dict:
    if not path.is_file():
        return {}
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return data if isinstance(data, dict) else {}


def _read_json(path: pathlib.Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _read_csv(path: pathlib.Path) -> Any:
    if not path.is_file():
        return None
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (ValueError, OSError):  # empty or unreadable: the report says so
        return None


def _accuracy_column(df: Any) -> str | None:
    for name in ("best_val_accuracy", "val_accuracy", "val_acc", "accuracy"):
        if name in df.columns:
            return name
    return next((c for c in df.columns if "val_acc" in c), None)


def _placement_column(df: Any) -> str | None:
    for name in ("placement", "placements", "attention/placement"):
        if name in df.columns:
            return name
    return None


# --------------------------------------------------------------------------- sections
def _settings_section(config: dict, info: dict) -> list[str]:
    rows = []
    for key in ("status", "started", "finished", "elapsed_s", "duration_s"):
        if key in info and not isinstance(info[key], (dict, list)):
            rows.append((key, info[key]))
    for key, value in config.items():
        if not isinstance(value, (dict, list)):
            rows.append((key, value))
        elif key in ("dataset", "space", "engine") and isinstance(value, dict):
            name = value.get("name") or value.get("spec") or value.get("source")
            if name is not None:
                rows.append((key, name))
    if not rows:
        return []
    lines = ["## Run", "", "| setting | value |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]
    return lines + [""]


def _comparison_section(comparison: Any) -> list[str]:
    lines = ["## Attention against its baselines", ""]
    if comparison is None or not len(comparison):
        return lines + ["No comparison.csv yet (the run has not reached its finalists).", ""]
    lines += [
        "From `comparison.csv`. Search rows: validation accuracy per family and placement. "
        "Finalist rows: test accuracy over repeated seeds, each baseline twin trained on the "
        "same seeds as its attention model; `diff_mean` is attention minus that baseline, paired "
        "over the seeds (positive: attention wins), `p_value` a paired t-test's.",
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


def _families_section(leaderboard: Any, run_dir: pathlib.Path) -> list[str]:
    lines = ["## Validation accuracy by family and placement", ""]
    if leaderboard is None or not len(leaderboard):
        return lines + ["No trials in leaderboard.csv yet.", ""]
    acc = _accuracy_column(leaderboard)
    if acc is None or "family" not in leaderboard.columns:
        return lines + ["leaderboard.csv has no family or validation accuracy column.", ""]
    df = leaderboard
    if "status" in df.columns:
        df = df[df["status"] == "complete"]
    if not len(df):
        return lines + ["No complete trial yet.", ""]
    placement = _placement_column(df)
    keys = ["family"] + ([placement] if placement else [])
    df = df.assign(**{k: df[k].map(lambda v: _cell(v) or "-") for k in keys})
    label = acc.removeprefix("best_").replace("_", " ")  # "val accuracy"
    best, mean = f"best {label}", f"mean {label}"
    grouped = df.groupby(keys, sort=True)[acc].agg(["count", "max", "mean"]).reset_index()
    grouped = grouped.rename(columns={"count": "trials", "max": best, "mean": mean})
    grouped = grouped.sort_values(best, ascending=False, kind="stable")
    lines += _markdown(grouped) + [""]
    bars = [
        (" / ".join(str(row[k]) for k in keys), float(row[best]), float(row[mean]))
        for _, row in grouped.iterrows()
    ]
    try:
        _bar_chart(bars, run_dir / FAMILIES_PNG, title=f"{label}: best (bar) and mean (line)")
        lines += [f"![{label} by family and placement]({FAMILIES_PNG})", ""]
    except Exception as exc:  # noqa: BLE001 - a plot must not cost the report
        lines += [f"(plot skipped: {type(exc).__name__}: {exc})", ""]
    return lines


def _top_section(leaderboard: Any, top: int) -> list[str]:
    lines = [f"## Best {top} trials", ""]
    if leaderboard is None or not len(leaderboard):
        return lines + ["No trials yet.", ""]
    wanted = [
        "trial_id", "trial", "family", _placement_column(leaderboard) or "", "status",
        _accuracy_column(leaderboard) or "", "val_loss", "params", "epochs", "train_seconds",
    ]
    gammas = [c for c in leaderboard.columns if c.startswith("gamma")]
    columns = [c for c in dict.fromkeys(wanted + gammas) if c and c in leaderboard.columns]
    table = leaderboard[columns or list(leaderboard.columns)].head(top)
    lines += ["All trials, every status, are in `leaderboard.csv`.", ""]
    return lines + _markdown(table) + [""]


def _model_sections(
    run_dir: pathlib.Path, config: dict, images: Any, num_images: int
) -> list[str]:
    gamma_lines = ["## Learned gamma (best model)", ""]
    map_lines = ["## Attention maps (best model)", ""]
    model_path = run_dir / "best_model.keras"
    if not model_path.is_file():
        note = ["No best_model.keras yet.", ""]
        return gamma_lines + note + map_lines + note
    try:
        from attn_search.export import load_best_model
        from attn_search.layers import SelfAttentionConv2D

        model = load_best_model(run_dir)
        layers = [l for l in _all_layers(model) if isinstance(l, SelfAttentionConv2D)]
    except Exception as exc:  # noqa: BLE001
        note = [f"(best model could not be loaded: {type(exc).__name__}: {exc})", ""]
        return gamma_lines + note + map_lines + note
    if not layers:
        note = ["The best model has no attention layer (a baseline won).", ""]
        return gamma_lines + note + map_lines + note

    gamma_lines += [
        "gamma scales each attention branch (`y = shortcut(x) + gamma * attention`); it is "
        "learned, so its size after training shows how much the model chose to use attention.",
        "",
        "| layer | heads | kv_pool | input | learned gamma |",
        "|---|---|---|---|---|",
    ]
    for layer in layers:
        shape = "x".join(str(d) for d in tuple(layer.input.shape)[1:])
        gamma = float(_to_numpy(layer.gamma))
        gamma_lines.append(
            f"| {layer.name} | {layer.num_heads} | {getattr(layer, 'kv_pool', 1)} | {shape} "
            f"| {gamma:.4g} |"
        )
    gamma_lines.append("")

    try:
        if images is None:
            images = _validation_images(config, num_images)
        images = _to_numpy(images)[:num_images].astype("float32")
        maps = [_attention_map(model, layer, images) for layer in layers]
        _attention_figure(images, maps, [l.name for l in layers], run_dir / ATTENTION_PNG)
        map_lines += [
            "Each row is a validation image; each further column, one attention layer: where "
            "its queries look on average (mean over heads and query positions), brighter is "
            "more attention.",
            "",
            f"![attention maps]({ATTENTION_PNG})",
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
_CELL = 96


def _heat(values: Any) -> Any:
    """[0, 1] -> an RGB "hot" colormap (black, red, yellow, white), uint8."""
    import numpy as np

    v = np.clip(values, 0.0, 1.0)
    rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], -1)
    return (rgb * 255).astype("uint8")


def _image_rgb(image: Any) -> Any:
    import numpy as np

    image = np.clip(np.asarray(image, dtype="float32"), 0.0, 1.0)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] != 3:
        image = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1)
    return (image * 255).astype("uint8")


def _attention_figure(images: Any, maps: Sequence[Any], names: Sequence[str], path: pathlib.Path) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    header = 16
    cols = 1 + len(maps)
    canvas = Image.new("RGB", (cols * (_CELL + 4) + 4, header + len(images) * (_CELL + 4) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(["image", *names]):
        draw.text((4 + c * (_CELL + 4), 2), title if len(title) <= 16 else title[:15] + "~", fill="black")
    for r, image in enumerate(images):
        top = header + 4 + r * (_CELL + 4)
        base = Image.fromarray(_image_rgb(image)).resize((_CELL, _CELL), Image.NEAREST)
        canvas.paste(base, (4, top))
        for c, amap in enumerate(maps):
            a = np.asarray(amap[r], dtype="float32")
            a = (a - a.min()) / (a.max() - a.min() + 1e-12)
            heat = Image.fromarray(_heat(a)).resize((_CELL, _CELL), Image.BILINEAR)
            canvas.paste(Image.blend(base, heat, 0.6), (4 + (c + 1) * (_CELL + 4), top))
    _save_png_atomic(canvas, path)


def _bar_chart(bars: Sequence[tuple[str, float, float]], path: pathlib.Path, *, title: str) -> None:
    """Horizontal bars (best) with a tick (mean), on a 0..1 axis."""
    from PIL import Image, ImageDraw

    colors = {"attention": (214, 96, 77), "plain": (67, 147, 195), "matched": (120, 120, 120)}
    label_w, bar_w, row_h, top = 220, 360, 20, 24
    canvas = Image.new("RGB", (label_w + bar_w + 60, top + row_h * len(bars) + 10), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill="black")
    for i, (label, best, mean) in enumerate(bars):
        y = top + i * row_h
        family = label.split(" / ")[0]
        color = colors.get(family, (150, 150, 150))
        draw.text((4, y + 4), label[:34], fill="black")
        x1 = label_w + int(bar_w * min(max(best, 0.0), 1.0))
        draw.rectangle([label_w, y + 3, max(label_w + 1, x1), y + row_h - 3], fill=color)
        xm = label_w + int(bar_w * min(max(mean, 0.0), 1.0))
        draw.line([xm, y + 1, xm, y + row_h - 1], fill="black", width=2)
        draw.text((label_w + bar_w + 6, y + 4), f"{best:.3f}", fill="black")
    draw.line([label_w, top, label_w, top + row_h * len(bars)], fill="black")
    _save_png_atomic(canvas, path)


# --------------------------------------------------------------------------- writing
def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(df: Any) -> list[str]:
    columns = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines


def _save_png_atomic(image: Any, path: pathlib.Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
