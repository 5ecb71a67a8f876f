"""The `lookup` positive control: shapes, balance, determinism, and the rule behind its labels.

No training here: `benchmarks/control_check.py` measures what the models make of it.
"""

from __future__ import annotations

import numpy as np
import pytest

from attn_search.datasets import load_dataset
from attn_search.datasets._control import (
    BAR_NAMES,
    BARS,
    COLOURS,
    MARKER,
    make_lookup,
    matching_bar,
)
from attn_search.datasets._synthetic import SYNTHETIC
from attn_search.errors import DatasetError


def _objects(image: np.ndarray) -> dict:
    """Every object of one image, read from its pixels: the marker's colour index and corner,
    and for each colour index the bar's orientation and its lit pixels."""
    out = {"bars": {}}
    for c, colour in enumerate(COLOURS):
        mask = (image == colour).all(axis=-1)
        windows = np.lib.stride_tricks.sliding_window_view(mask, (3, 3))
        marker = np.argwhere((windows == MARKER).all(axis=(-2, -1)))
        if len(marker):
            out["marker"] = (c, tuple(marker[0]))
            r, col = marker[0]
            mask[r : r + 2, col : col + 2] = False
        orientation = [b for b, bar in enumerate(BARS) if (windows == bar).all(axis=(-2, -1)).any()]
        out["bars"][c] = (orientation, np.argwhere(mask))
    return out


def test_shapes_dtypes_and_balanced_classes():
    x, y = make_lookup(n=42, size=20, seed=0)
    assert x.shape == (42, 20, 20, 3) and x.dtype == np.uint8
    assert y.shape == (42,) and y.dtype == np.int32
    assert np.bincount(y, minlength=4).tolist() == [11, 11, 10, 10]
    _, y = make_lookup(n=400, seed=1)
    assert np.bincount(y).tolist() == [100, 100, 100, 100]
    # black background and the four colours, nothing else
    colours = {tuple(p) for p in x.reshape(-1, 3).tolist()}
    assert colours == {(0, 0, 0), *map(tuple, COLOURS.tolist())}


def test_deterministic_by_seed():
    x, y = make_lookup(n=60, seed=3)
    x2, y2 = make_lookup(n=60, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, y3 = make_lookup(n=60, seed=4)
    assert not np.array_equal(x, x3)
    assert not np.array_equal(y, y3)


def test_label_is_the_orientation_of_the_bar_with_the_markers_colour():
    x, y = make_lookup(n=200, size=24, seed=7)
    np.testing.assert_array_equal(matching_bar(x), y)
    markers = []
    for image, label in zip(x, y, strict=True):
        objects = _objects(image)
        colour, (r, c) = objects["marker"]
        markers.append(colour)
        orientations = [objects["bars"][k][0] for k in range(4)]
        # one bar of each colour, and each orientation exactly once
        assert all(len(o) == 1 for o in orientations)
        assert sorted(o[0] for o in orientations) == [0, 1, 2, 3]
        assert orientations[colour] == [label]
        # every bar is far from the marker: corners >= gap (8) apart, so pixels >= 6 apart
        for _, pixels in objects["bars"].values():
            assert len(pixels) == 3
            near = np.abs(pixels - [r, c]).max(axis=1).min()
            far = np.abs(pixels - [r + 1, c + 1]).max(axis=1).min()
            assert min(near, far) >= 6
    # the marker's colour is spread over all colours and says nothing about the label
    table = np.zeros((4, 4), int)
    np.add.at(table, (np.array(markers), y), 1)
    assert table.min() >= 5


def test_counts_of_colours_and_orientations_are_the_same_in_every_image():
    x, y = make_lookup(n=100, seed=2)
    lit = (x > 0).any(axis=-1).sum(axis=(1, 2))
    assert set(lit.tolist()) == {4 * 3 + 4}  # four 3-pixel bars and the 2x2 marker
    per_colour = np.stack([(x == c).all(axis=-1).sum(axis=(1, 2)) for c in COLOURS], axis=1)
    # each colour: its bar (3 pixels), plus the marker (4) in the marker's colour
    assert sorted(set(per_colour.ravel().tolist())) == [3, 7]
    assert (per_colour == 7).sum(axis=1).tolist() == [1] * 100


def test_gap_parameter_and_too_small_size():
    x, _ = make_lookup(n=50, size=30, gap=14, seed=0)
    for image in x:
        objects = _objects(image)
        _, (r, c) = objects["marker"]
        for _, pixels in objects["bars"].values():
            assert np.abs(pixels - [r, c]).max(axis=1).min() >= 12
    with pytest.raises(DatasetError) as info:
        make_lookup(n=10, size=16, gap=11)
    assert str(info.value) == (
        "lookup needs size >= max(12, gap + 6) to place the marker and the four bars. "
        "Received: size=16, gap=11"
    )


def test_table_entry_and_spec_with_parameters():
    task = SYNTHETIC["lookup"]
    assert task.class_names == BAR_NAMES == ("horizontal", "vertical", "diagonal", "antidiagonal")
    assert task.channels == 3
    assert task.resolve({"size": 30}) == {"size": 30, "n": 4000, "gap": 10, "seed": None}
    data = load_dataset("lookup:size=20,n=200", seed=2)
    info = data.info
    assert info.name == "lookup"
    assert info.source == "synthetic:lookup(size=20,n=200,gap=6,seed=2)"
    assert info.input_shape == (20, 20, 3)
    assert info.num_classes == 4
    assert info.sizes == {"train": 140, "val": 30, "test": 30}
    x, y = data.arrays("train")
    assert x.shape == (140, 20, 20, 3) and x.max() == 1.0
    # the loaded images keep the rule: labels read back from the pixels are the split's labels
    np.testing.assert_array_equal(matching_bar(np.round(x * 255).astype(np.uint8)), y)


def _statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Simple statistics of each image, read from its pixels -> (features, pairing one-hot).

    Features: the marker's position and colour; each colour's and each orientation's bar
    position, and its distance from the marker; which orientation is nearest the marker; the
    pixel count of each colour. The pairing: which orientation each colour has (16 one-hots),
    what global average pooling of local features could at best sum up.
    """
    rows, pairs = [], []
    for image in x:
        objects = _objects(image)
        colour, corner = objects["marker"]
        place = np.array(corner, float)
        by_orientation = np.zeros((4, 2))
        by_colour = np.zeros((4, 2))
        pairing = np.zeros((4, 4))
        for c, (orientation, pixels) in objects["bars"].items():
            by_colour[c] = by_orientation[orientation[0]] = pixels.mean(axis=0)
            pairing[c, orientation[0]] = 1
        distance = np.abs(by_orientation - place).max(axis=1)
        counts = [(image == k).all(axis=-1).sum() for k in COLOURS]
        rows.append(
            np.concatenate(
                [
                    place,
                    np.eye(4)[colour],
                    by_colour.ravel(),
                    by_orientation.ravel(),
                    distance,
                    np.abs(by_colour - place).max(axis=1),
                    np.eye(4)[distance.argmin()],
                    counts,
                ]
            )  # fmt: skip
        )
        pairs.append(pairing.ravel())
    return np.array(rows), np.array(pairs)


def test_simple_statistics_and_unbound_pairings_do_not_give_the_label_away():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_lookup(n=900, seed=11)
    features, pairing = _statistics(x)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    # A linear model on positions, distances, colours, counts, and the colour-orientation
    # pairing (a sum of local features): near chance (0.25).
    flat = np.concatenate([features, pairing], axis=1)
    assert cross_val_score(model, flat, y, cv=3).mean() < 0.32
    # Binding the marker's colour to the pairing gives it away: the check can fail.
    bound = np.einsum("nc,nco->no", features[:, 2:6], pairing.reshape(-1, 4, 4))
    assert cross_val_score(model, np.concatenate([flat, bound], axis=1), y, cv=3).mean() > 0.95
