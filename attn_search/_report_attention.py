"""The best model's attention, for the report: its attention layers, validation images, and the
figure of where a few query positions look, per layer and head, overlaid on each image.

The scores come from the layer itself (`SelfAttentionConv2D(..., return_attention_scores=True)`:
`(B, heads, H*W, H_k*W_k)`, rows summing to 1; `kv_pool` shrinks the key grid to
`ceil(H / kv_pool) x ceil(W / kv_pool)`), fed with the model's own features at the layer's input.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from attn_search._report_plots import new_figure, save_figure
from attn_search.formatting import format_cell

if TYPE_CHECKING:  # pragma: no cover
    from attn_search._report_doc import Document
    from attn_search.runfolder import RunFolder

__all__ = ["attention_figure", "attention_maps", "model_sections", "to_numpy"]

_QUERY_COLORS = ("#00e5ff", "#76ff03", "#ff40ff")


def model_sections(
    doc: Document, folder: RunFolder, config: dict, images: Any, num_images: int
) -> None:
    """The best model's sections: its learned gamma (a table) and its attention maps."""
    headings = ("Learned gamma (best model)", "Attention maps (best model)")
    if not folder.best_model_path.is_file():
        for heading in headings:
            doc.heading(2, heading)
            doc.note(f"No {folder.best_model_path.name} yet.")
        return
    try:
        from attn_search.export import load_best_model
        from attn_search.layers import attention_layers

        model = load_best_model(folder.path)
        layers = attention_layers(model)
    except Exception as exc:  # noqa: BLE001
        for heading in headings:
            doc.heading(2, heading)
            doc.note(f"(best model could not be loaded: {type(exc).__name__}: {exc})")
        return
    if not layers:
        for heading in headings:
            doc.heading(2, heading)
            doc.note("The best model has no attention layer (a baseline won).")
        return
    rows = [
        [
            layer.name,
            format_cell(layer.num_heads),
            format_cell(getattr(layer, "kv_pool", 1)),
            format_cell(tuple(layer.input.shape)[1:]),
            format_cell(float(to_numpy(layer.gamma)), significant=4),
        ]
        for layer in layers
    ]
    doc.heading(2, headings[0])
    doc.para(
        "gamma scales each attention branch (`y = shortcut(x) + gamma * attention`); it is "
        "learned, so its size after training shows how much the model chose to use attention."
    )
    doc.table(["layer", "heads", "kv_pool", "input", "learned gamma"], rows)

    doc.heading(2, headings[1])
    try:
        if images is None:
            images = validation_images(config, num_images)
        images = to_numpy(images)[:num_images].astype("float32")
        maps = []
        for layer in layers:
            scores, grid = attention_maps(model, layer, images)
            maps.append((layer.name, scores, grid, int(getattr(layer, "kv_pool", 1) or 1)))
    except Exception as exc:  # noqa: BLE001 - maps are a bonus; say why they are missing
        doc.note(f"(attention maps skipped: {type(exc).__name__}: {exc})")
        return
    doc.drawn_figure(
        folder.report_path("report_attention.png"),
        attention_figure,
        images,
        maps,
        **_FIGURE_TEXT["report_attention.png"],
    )


def to_numpy(value: Any) -> Any:
    import numpy as np

    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    try:
        import keras

        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:  # noqa: BLE001
        return np.asarray(value)


def validation_images(config: dict, n: int) -> Any:
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
        return to_numpy(x)
    raise ValueError("the validation split is empty")


def attention_maps(model: Any, layer: Any, images: Any) -> tuple[Any, tuple[int, int]]:
    """`(scores, (H, W))`: scores `(N, heads, H*W, H_k, W_k)` and the layer's query grid."""
    import keras
    import numpy as np

    features = keras.Model(model.input, layer.input)(images)
    _, scores = layer(features, return_attention_scores=True)  # (N, heads, HW, S)
    scores = np.asarray(to_numpy(scores), dtype="float32")
    height, width = int(features.shape[1]), int(features.shape[2])
    pool = int(getattr(layer, "kv_pool", 1) or 1)
    hk, wk = math.ceil(height / pool), math.ceil(width / pool)
    if hk * wk != scores.shape[-1]:
        raise ValueError(
            f"layer {layer.name}: {scores.shape[-1]} keys, expected {hk}x{wk} "
            f"(a {height}x{width} grid pooled by kv_pool={pool})"
        )
    return scores.reshape(*scores.shape[:3], hk, wk), (height, width)


def query_positions(scores: Any, width: int, count: int) -> list[tuple[int, int]]:
    """The `count` query cells whose attention is most concentrated (highest peak weight over
    heads), each at least 2 cells from the others. scores: `(heads, HW, Hk, Wk)`."""
    import numpy as np

    peak = np.asarray(scores).max(axis=(0, 2, 3))  # (HW,)
    chosen: list[tuple[int, int]] = []
    for index in np.argsort(-peak, kind="stable"):
        cell = (int(index) // width, int(index) % width)
        if all(max(abs(cell[0] - r), abs(cell[1] - c)) >= 2 for r, c in chosen):
            chosen.append(cell)
        if len(chosen) == count:
            break
    return chosen


def attention_figure(
    images: Any,
    layers: Sequence[tuple[str, Any, tuple[int, int], int]],
    path: pathlib.Path,
) -> float:
    """Draws the figure; returns the largest weight shown, as a multiple of uniform attention.

    Args:
        images: `(N, H, W, C)` images.
        layers: `(name, scores (N, heads, HW, Hk, Wk), (Hq, Wq), kv_pool)` per attention layer.
        path: the PNG to write.
    """
    import numpy as np

    heads = max(s.shape[1] for _, s, _, _ in layers)
    n_queries = 3 if heads * len(layers) <= 2 else 2
    cols = 1 + heads * n_queries
    rows = len(images) * len(layers)
    fig, axes = new_figure(1.55 * cols + 0.9, 1.55 * rows + 0.9, ncols=cols, nrows=rows)
    from matplotlib.colors import Normalize

    # Weight x number of keys: 1 is uniform attention, whatever the layer's key grid.
    top = max(float(s.max()) * s.shape[-1] * s.shape[-2] for _, s, _, _ in layers)
    span = max(1.0, math.log10(max(top, 1.0)))  # a log scale symmetric around uniform
    norm = Normalize(vmin=-span, vmax=span)
    image_h, image_w = images.shape[1], images.shape[2]
    shown = None
    for i, image in enumerate(images):
        picture = _displayable(image)
        for j, (name, scores, (hq, wq), pool) in enumerate(layers):
            r = i * len(layers) + j
            sy, sx = image_h / hq, image_w / wq
            queries = query_positions(scores[i], wq, n_queries)
            ax = axes[r][0]
            _show(ax, picture)
            for q, (qy, qx) in enumerate(queries):
                _mark(ax, (qx + 0.5) * sx - 0.5, (qy + 0.5) * sy - 0.5, q)
            ax.set_title(f"image {i + 1}, {name}", fontsize=7)
            ax.set_xlabel("x (px)", fontsize=7)
            ax.set_ylabel("y (px)", fontsize=7)
            ax.tick_params(labelsize=6)
            for h in range(heads):
                for q, (qy, qx) in enumerate(queries):
                    ax = axes[r][1 + h * n_queries + q]
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if h >= scores.shape[1]:
                        ax.set_axis_off()
                        continue
                    amap = scores[i, h, qy * wq + qx]  # (Hk, Wk)
                    hk, wk = amap.shape
                    extent = (-0.5, wk * pool * sx - 0.5, hk * pool * sy - 0.5, -0.5)
                    shown = ax.imshow(
                        np.log10(np.clip(np.asarray(amap) * hk * wk, 10**-span, None)),
                        cmap="RdBu_r",
                        norm=norm,
                        extent=extent,
                        interpolation="nearest",
                    )
                    _outline(ax, picture)
                    ax.set_xlim(-0.5, image_w - 0.5)
                    ax.set_ylim(image_h - 0.5, -0.5)
                    _mark(ax, (qx + 0.5) * sx - 0.5, (qy + 0.5) * sy - 0.5, q)
                    if r == 0:
                        ax.set_title(f"head {h + 1}, query {q + 1}", fontsize=7)
            for q in range(len(queries), n_queries):
                for h in range(heads):
                    axes[r][1 + h * n_queries + q].set_axis_off()
    if shown is not None:
        bar = fig.colorbar(shown, ax=axes[:, 1:].ravel().tolist(), shrink=0.6, pad=0.01)
        ticks = range(-math.floor(span), math.floor(span) + 1)
        bar.set_ticks(list(ticks), labels=[_ratio_text(t) for t in ticks])
        bar.set_label("attention weight / uniform weight (log scale)", fontsize=8)
    fig.suptitle("Attention maps of the best model: where each marked query position looks")
    save_figure(fig, path)
    return top


def _displayable(image: Any) -> Any:
    import numpy as np

    image = np.asarray(image, dtype="float32")
    lo, hi = float(image.min()), float(image.max())
    image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    if image.shape[-1] == 1:
        return image[..., 0]
    if image.shape[-1] != 3:
        return image.mean(axis=-1)
    return image


def _ratio_text(power: int) -> str:
    """10**power as text: 1/100, 1/10, 1 (uniform), 10, 100."""
    if power == 0:
        return "1 (uniform)"
    return f"{10**power:g}" if power > 0 else f"1/{10**-power:g}"


def _outline(ax: Any, picture: Any) -> None:
    """The image's shapes as thin contour lines, so a map can be read against the image."""
    gray = picture if picture.ndim == 2 else picture.mean(axis=-1)
    if float(gray.max()) > float(gray.min()):
        ax.contour(
            gray,
            levels=[float(gray.min()) + 0.25 * (float(gray.max()) - float(gray.min()))],
            colors="black",
            linewidths=0.7,
            alpha=0.8,
        )


def _show(ax: Any, picture: Any) -> None:
    ax.imshow(picture, cmap="gray", interpolation="nearest", vmin=0.0, vmax=1.0)


def _mark(ax: Any, x: float, y: float, q: int) -> None:
    ax.scatter(
        [x],
        [y],
        marker="o",
        s=46,
        facecolors=_QUERY_COLORS[q % 3],
        edgecolors="black",
        linewidths=1.0,
        zorder=5,
    )
    ax.annotate(
        str(q + 1),
        (x, y),
        xytext=(4, 3),
        textcoords="offset points",
        fontsize=7,
        color=_QUERY_COLORS[q % 3],
        fontweight="bold",
    )


#: Each figure's alt text and caption (how to read it), by file name.
_FIGURE_TEXT = {
    "report_attention.png": {
        "alt": "attention maps",
        "caption": (
            "First column: a validation image with the query positions (numbered dots) whose "
            "attention is most concentrated, at each attention layer; then, per head, where each "
            "query looks, on a log scale: red key cells get more than uniform attention (1 / the "
            "number of key cells), blue less, white about uniform; black lines outline the image."
        ),
    },
}
