"""The report's pictures, drawn with Pillow: a bar chart and attention maps over images."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

from attn_search._atomic import atomic_path

__all__ = ["attention_figure", "bar_chart"]

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


def attention_figure(
    images: Any, maps: Sequence[Any], names: Sequence[str], path: pathlib.Path
) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    header = 16
    cols = 1 + len(maps)
    canvas = Image.new(
        "RGB", (cols * (_CELL + 4) + 4, header + len(images) * (_CELL + 4) + 4), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(["image", *names]):
        draw.text(
            (4 + c * (_CELL + 4), 2), title if len(title) <= 16 else title[:15] + "~", fill="black"
        )
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


def bar_chart(bars: Sequence[tuple[str, float, float]], path: pathlib.Path, *, title: str) -> None:
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
def _save_png_atomic(image: Any, path: pathlib.Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
