"""attn_search.datasets: every spec loads, splits are stratified and fixed by the seed, and every
bad input stops with one clear DatasetError (whole messages asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from attn_search.datasets import (
    Dataset,
    DatasetInfo,
    _synthetic,
    available,
    check_spec,
    load_dataset,
    make_pathfinder,
    make_same_different,
)
from attn_search.errors import AttnSearchError, DatasetError


@pytest.fixture(autouse=True)
def _seeded_keras_session():
    """Overrides the conftest fixture for this module: these tests build no Keras models, so
    they skip its per-test keras.backend.clear_session() (about half a second each here)."""
    np.random.seed(1234)
    yield


# --------------------------------------------------------------------------------------------
# helpers


def _save(path, size=(12, 10), mode="RGB", value=0):
    """Writes one image of (width, height) ``size`` whose pixels depend on ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    w, h = size
    if mode in ("L", "P"):
        array = rng.integers(0, 256, (h, w), dtype=np.uint8)
        image = Image.fromarray(array, "L")
        if mode == "P":
            image = image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode == "RGBA":
        image = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    else:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    image.save(path)
    return path


def _mixed_folder(root, per_class=6):
    """Two classes of PNG/JPEG/BMP/GIF files in mixed sizes and modes; most common 12x10."""
    formats = [
        ("png", "RGB"),
        ("jpg", "L"),
        ("bmp", "RGB"),
        ("gif", "P"),
        ("png", "RGBA"),
        ("jpeg", "RGB"),
    ]
    k = 0
    for cls in ("cats", "dogs"):
        for i in range(per_class):
            ext, mode = formats[i % len(formats)]
            size = (12, 10) if i % 3 else (20, 7)
            _save(root / cls / f"{i}.{ext}", size, mode, value=k)
            k += 1
    return root


def _gray_folder(root, classes=("a", "b", "c"), per_class=5, size=(9, 9)):
    k = 0
    for cls in classes:
        for i in range(per_class):
            _save(root / cls / f"{i}.png", size, "L", value=k)
            k += 1
    return root


def _corrupt_folder(tmp_path):
    """Three grey classes plus two unreadable files: a/broken.png and b/truncated.jpg."""
    root = _gray_folder(tmp_path / "g")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = Image.open(root / "b" / "0.png")
    good.save(root / "b" / "truncated.jpg")
    data_bytes = (root / "b" / "truncated.jpg").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(data_bytes[: len(data_bytes) // 2])
    return root


def _batches(pipeline):
    xs, ys = [], []
    for x, y in pipeline:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _message(excinfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------------------------
# digits, the default


def test_digits_shapes_scaling_and_stratified_splits():
    data = load_dataset("digits")
    info = data.info
    assert info.name == "digits"
    assert info.source == "sklearn.datasets.load_digits"
    assert info.input_shape == (8, 8, 1)
    assert info.num_classes == 10
    assert info.class_names == tuple(str(i) for i in range(10))
    assert info.sizes == {"train": 1257, "val": 270, "test": 270}
    assert info.streaming is False
    x, y = data.arrays("train")
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.shape == (1257, 8, 8, 1)
    assert x.min() == 0.0 and x.max() == 1.0
    for split in ("train", "val", "test"):
        _, ys = data.arrays(split)
        counts = np.bincount(ys, minlength=10)
        assert counts.min() >= 1
        # stratified: every class keeps about its share of the split
        share = counts / counts.sum()
        assert np.abs(share - 0.1).max() < 0.02
    # the splits are disjoint and together the whole dataset
    from sklearn.datasets import load_digits

    whole = load_digits().images.reshape(len(load_digits().images), -1) / 16.0
    got = np.concatenate([data.arrays(s)[0].reshape(-1, 64) for s in ("train", "val", "test")])
    as_rows = lambda a: {r.tobytes() for r in a.astype(np.float32)}  # noqa: E731
    assert len(got) == len(whole)
    assert as_rows(got) == as_rows(whole)


def test_digits_pipelines_batches_types_and_order():
    import tensorflow as tf

    data = load_dataset("digits")
    train = data.train(64)
    assert train.element_spec[0].shape.as_list() == [None, 8, 8, 1]
    assert train.element_spec[0].dtype == tf.float32
    assert train.element_spec[1].dtype == tf.int32
    x, y = _batches(data.val(100))
    xa, ya = data.arrays("val")
    np.testing.assert_array_equal(x, xa)
    np.testing.assert_array_equal(y, ya)
    # train: all examples once per pass, shuffled, and the same order for the same seed
    x1, y1 = _batches(data.train(256, seed=3))
    x2, y2 = _batches(data.train(256, seed=3))
    x3, _ = _batches(data.train(256, seed=4))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    xt, yt = data.arrays("train")
    assert sorted(y1.tolist()) == sorted(yt.tolist())
    assert not np.array_equal(y1, yt)
    x4, y4 = _batches(data.train(256, shuffle=False))
    np.testing.assert_array_equal(y4, yt)


def test_same_spec_and_seed_give_the_same_split_and_other_seeds_another():
    a = load_dataset("digits", seed=7)
    b = load_dataset("digits", seed=7)
    c = load_dataset("digits", seed=8)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.arrays(split)[0], b.arrays(split)[0])
        np.testing.assert_array_equal(a.arrays(split)[1], b.arrays(split)[1])
    assert not np.array_equal(a.arrays("test")[0], c.arrays("test")[0])


def test_limit_caps_the_total_stratified():
    data = load_dataset("digits", limit=100, seed=1)
    assert sum(data.info.sizes.values()) == 100
    assert data.info.sizes == {"train": 70, "val": 15, "test": 15}
    for split in ("train", "val", "test"):
        assert set(data.arrays(split)[1].tolist()) == set(range(10))
    again = load_dataset("digits", limit=100, seed=1)
    np.testing.assert_array_equal(data.arrays("train")[0], again.arrays("train")[0])


def test_fractions_zero_give_empty_splits():
    data = load_dataset("digits", val_fraction=0, test_fraction=0.2)
    assert data.info.sizes == {"train": 1438, "val": 0, "test": 359}
    x, y = data.arrays("val")
    assert x.shape == (0, 8, 8, 1) and y.shape == (0,)
    assert list(data.val(32)) == []


def test_image_size_resizes_in_memory_sources():
    data = load_dataset("digits", image_size=16, limit=200)
    assert data.info.input_shape == (16, 16, 1)
    x, _ = data.arrays("train")
    assert x.shape[1:] == (16, 16, 1)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5


def test_dataset_is_returned_as_is_and_info_to_dict():
    data = load_dataset("digits", limit=60)
    assert load_dataset(data) is data
    d = data.info.to_dict()
    assert d == {
        "name": "digits",
        "source": "sklearn.datasets.load_digits",
        "input_shape": [8, 8, 1],
        "num_classes": 10,
        "class_names": [str(i) for i in range(10)],
        "sizes": {"train": 40, "val": 10, "test": 10},
        "streaming": False,
    }
    assert isinstance(data.info, DatasetInfo) and isinstance(data, Dataset)
    assert repr(data) == (
        "Dataset(name='digits', input_shape=(8, 8, 1), num_classes=10, "
        "sizes={'train': 40, 'val': 10, 'test': 10}, streaming=False)"
    )


# --------------------------------------------------------------------------------------------
# available(), check_spec(), import cost


def test_available_lists_builtins_with_shape_classes_size_download():
    rows = {r["name"]: r for r in available()}
    assert list(rows) == [
        "digits",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "pathfinder",
        "same_different",
        "lookup",
    ]
    assert rows["digits"] == {
        "name": "digits",
        "shape": (8, 8, 1),
        "classes": 10,
        "size": 1797,
        "download": False,
        "description": "handwritten digits 0-9 from scikit-learn, embedded; the quick default",
    }
    assert rows["cifar100"]["classes"] == 100 and rows["cifar100"]["download"] is True
    assert rows["pathfinder"]["shape"] == (16, 16, 1)
    assert rows["pathfinder"]["size"] == 6000
    assert rows["pathfinder"]["download"] is False
    assert rows["lookup"]["shape"] == (24, 24, 3) and rows["lookup"]["classes"] == 4
    for row in rows.values():
        assert set(row) == {"name", "shape", "classes", "size", "download", "description"}


def test_available_and_check_spec_do_not_import_tensorflow():
    # As the CLI runs it: the package skips importing the layer when started as attn-search.
    code = (
        "import sys; sys.argv[0] = 'attn-search'; import attn_search.datasets as d; "
        "d.available(); d.check_spec('digits'); d.check_spec('pathfinder:size=16'); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_check_spec_accepts_names_parameters_and_folders(tmp_path):
    assert check_spec("digits") is None
    assert check_spec("pathfinder:n=100") is None
    assert check_spec(tmp_path) is None


# --------------------------------------------------------------------------------------------
# limits and fractions that leave classes short


def test_limit_small_enough_to_need_every_example_works_without_val_and_test():
    # with val/test, limit=20 is too small for 10 classes (see ERRORS)
    data = load_dataset("digits", limit=20, val_fraction=0, test_fraction=0)
    assert data.info.sizes == {"train": 20, "val": 0, "test": 0}


def test_class_with_too_few_examples_for_three_splits_fits_two():
    x = np.zeros((12, 4, 4), np.uint8)
    y = np.array(["a"] * 5 + ["b"] * 5 + ["c"] * 2)  # 'c' is too small for three (see ERRORS)
    data = load_dataset((x, y), test_fraction=0)
    assert data.info.sizes == {"train": 9, "val": 3, "test": 0}  # one of each class in val
    assert data.info.class_names == ("a", "b", "c")


# --------------------------------------------------------------------------------------------
# arrays and .npz


def test_arrays_tuple_scaling_rules():
    rng = np.random.default_rng(0)
    y = np.repeat([3, 7], 20)
    x8 = rng.integers(0, 256, (40, 5, 6), dtype=np.uint8)
    data = load_dataset((x8, y), val_fraction=0, test_fraction=0)
    assert data.info.input_shape == (5, 6, 1)
    assert data.info.class_names == ("3", "7")
    assert data.info.source == "arrays"
    x, labels = data.arrays("train")
    assert sorted(set(labels.tolist())) == [0, 1]
    assert np.isclose(x.max(), x8.max() / 255.0)
    xf = rng.normal(size=(40, 5, 6, 3)).astype(np.float64)  # standardised: min-max scaled
    x, _ = load_dataset((xf, y)).arrays("train")
    assert x.shape[1:] == (5, 6, 3) and x.min() >= 0.0 and x.max() <= 1.0
    all_x = np.concatenate([load_dataset((xf, y)).arrays(s)[0] for s in ("train", "val", "test")])
    assert np.isclose(all_x.min(), 0.0) and np.isclose(all_x.max(), 1.0)
    x16 = x8.astype(np.uint16) * 257  # 16-bit images
    x, _ = load_dataset((x16, y)).arrays("train")
    assert x.max() <= 1.0 and x.max() > 0.9


def test_npz_with_own_test_split_and_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "pets.npz"
    names = np.array(["cat", "dog", "emu"])
    np.savez(
        path,
        x_train=rng.integers(0, 256, (60, 6, 6, 3), dtype=np.uint8),
        y_train=names[np.arange(60) % 3],
        x_test=rng.integers(0, 256, (9, 6, 6, 3), dtype=np.uint8),
        y_test=names[np.arange(9) % 3],
    )
    data = load_dataset(path)
    assert data.info.name == "pets"
    assert data.info.source == f"npz:{path.resolve()}"
    assert data.info.class_names == ("cat", "dog", "emu")
    assert data.info.input_shape == (6, 6, 3)
    # the file's own test split is kept whole; val is a share of the training part
    assert data.info.sizes == {"train": 51, "val": 9, "test": 9}
    with np.load(path) as f:
        x_test = f["x_test"]
    got = np.round(data.arrays("test")[0] * 255).astype(np.uint8)
    assert {r.tobytes() for r in got} == {r.tobytes() for r in x_test}
    small = load_dataset(path, limit=23)
    assert small.info.sizes == {"train": 17, "val": 3, "test": 3}  # 23 shared 20 : 3


def test_npz_with_x_and_y(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, x=np.linspace(0, 1, 30 * 16).reshape(30, 4, 4), y=np.arange(30) % 2)
    data = load_dataset(path)
    # round(0.15 * 30) == 4
    assert data.info.sizes == {"train": 22, "val": 4, "test": 4}
    assert data.info.class_names == ("0", "1")


def test_npz_that_is_not_a_zip_names_the_file_and_the_reason(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError) as e:
        load_dataset(broken)
    # the middle is numpy's own reason, which varies by version
    assert _message(e).startswith(f"Cannot read {broken} as an .npz file (")
    assert _message(e).endswith(
        "); save it with numpy.savez(path, x_train=images, y_train=labels)."
    )


# --------------------------------------------------------------------------------------------
# keras.datasets, with the download replaced by a local file


def _fake_mnist(tmp_path, n_train=50, n_test=20):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=(np.arange(n_train) % 10).astype(np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=(np.arange(n_test) % 10).astype(np.uint8),
    )
    return path


def test_keras_dataset_loads_through_keras_with_a_local_file(tmp_path, monkeypatch):
    import keras.src.datasets.mnist as keras_mnist

    local = _fake_mnist(tmp_path)
    calls = []

    def fake_get_file(fname=None, origin=None, **kwargs):
        calls.append(origin)
        return str(local)

    monkeypatch.setattr(keras_mnist, "get_file", fake_get_file)
    data = load_dataset("mnist", val_fraction=0.2)
    assert calls == ["https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"]
    assert data.info.source == "keras.datasets.mnist"
    assert data.info.input_shape == (28, 28, 1)
    assert data.info.class_names == tuple(str(i) for i in range(10))
    # the source's own test split is the test split
    assert data.info.sizes == {"train": 40, "val": 10, "test": 20}
    with np.load(local) as f:
        expected = f["x_test"][..., None]
    got = np.round(data.arrays("test")[0] * 255).astype(np.uint8)
    assert {r.tobytes() for r in got} == {r.tobytes() for r in expected}


def test_keras_dataset_offline_says_how_to_use_a_local_copy(monkeypatch):
    import keras.src.datasets.cifar10 as keras_cifar10

    def offline(*args, **kwargs):
        raise Exception(
            "URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: "
            "None -- [Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(keras_cifar10, "get_file", offline)
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10")
    assert _message(e) == (
        "Could not get 'cifar10' through keras.datasets (Exception: URL fetch failure on "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None -- [Errno -3] Temporary "
        "failure in name resolution). Offline? Save a copy as .npz with x_train, y_train, "
        "x_test, y_test (numpy.savez) and pass its path instead, e.g. --dataset cifar10.npz."
    )


# --------------------------------------------------------------------------------------------
# folders


def test_folder_of_mixed_formats_sizes_and_modes(tmp_path):
    root = _mixed_folder(tmp_path / "pets")
    data = load_dataset(root, val_fraction=0.25, test_fraction=0.25)
    info = data.info
    assert info.name == "pets"
    assert info.source == f"folder:{root.resolve()}"
    assert info.class_names == ("cats", "dogs")
    # most common size is 12x10 (width x height) -> (10, 12); colour present -> 3 channels
    assert info.input_shape == (10, 12, 3)
    assert info.sizes == {"train": 6, "val": 3, "test": 3}
    x, y = _batches(data.test(2))
    assert x.shape == (3, 10, 12, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # a given image_size wins
    data = load_dataset(root, image_size=(16, 8))
    assert data.info.input_shape == (16, 8, 3)


def test_folder_grayscale_gives_one_channel_and_reads_pixels_exactly(tmp_path):
    root = _gray_folder(tmp_path / "g", classes=("a", "b"), per_class=4)
    _save(root / "a" / "gray.gif", (9, 9), "L", value=100)  # a palette image, grey palette
    _save(root / "b" / "gray.bmp", (9, 9), "L", value=101)
    data = load_dataset(root, val_fraction=0, test_fraction=0)
    assert data.info.input_shape == (9, 9, 1)
    x, y = data.arrays("train")
    assert len(y) == 10
    expected = {}
    for cls_id, cls in enumerate(("a", "b")):
        for f in sorted((root / cls).iterdir()):
            pixels = np.asarray(Image.open(f).convert("L"), np.float32)
            expected[pixels.tobytes()] = cls_id
    got = {
        np.round(xi[..., 0] * 255).astype(np.float32).tobytes(): int(yi)
        for xi, yi in zip(x, y, strict=True)
    }
    assert got == expected


def test_folder_streams_from_disk_above_the_memory_limit(tmp_path):
    root = _mixed_folder(tmp_path / "pets", per_class=9)
    memory = load_dataset(root, seed=2)
    streamed = load_dataset(root, seed=2, in_memory_limit_mb=0)
    assert memory.info.streaming is False
    assert streamed.info.streaming is True
    assert streamed.info.sizes == memory.info.sizes
    assert streamed.info.input_shape == memory.info.input_shape == (10, 12, 3)
    for split in ("val", "test"):
        xs, ys = _batches(getattr(streamed, split)(4))
        xm, ym = _batches(getattr(memory, split)(4))
        np.testing.assert_array_equal(ys, ym)
        np.testing.assert_allclose(xs, xm, atol=1e-6)
    xs, ys = _batches(streamed.train(5, seed=1))
    assert xs.shape == (memory.info.sizes["train"], 10, 12, 3)
    assert sorted(ys.tolist()) == sorted(memory.arrays("train")[1].tolist())
    with pytest.raises(DatasetError) as e:
        streamed.arrays("train")
    assert _message(e) == (
        f"Dataset 'pets' streams from disk (folder:{root.resolve()}), so it has no arrays; use "
        "its train()/val()/test() pipelines, or load it with a larger in_memory_limit_mb."
    )


def test_folder_corrupt_files_are_skipped_on_request(tmp_path):
    # by default they stop the load (see ERRORS)
    root = _corrupt_folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(root, skip_corrupt=True)
    skipped = [w for w in caught if issubclass(w.category, UserWarning)]
    assert [w.filename for w in skipped] == [__file__]  # points at the caller's line
    messages = [str(w.message) for w in skipped]
    assert messages == [
        f"Skipped 2 unreadable image file(s) in {str(root)!r}: a/broken.png, b/truncated.jpg."
    ]
    assert sum(data.info.sizes.values()) == 15


def test_folder_class_with_only_unreadable_images(tmp_path):
    root = _gray_folder(tmp_path / "g", classes=("a", "b"))
    (root / "c").mkdir()
    (root / "c" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError) as e, pytest.warns(UserWarning) as caught:
        load_dataset(root, skip_corrupt=True)
    assert [str(w.message) for w in caught] == [
        f"Skipped 1 unreadable image file(s) in {str(root)!r}: c/x.png."
    ]
    assert _message(e) == (
        f"Class folder {str(root / 'c')!r} has no readable images (every one was skipped as "
        "unreadable); add images to it or remove it."
    )


def test_folder_loading_writes_nothing(tmp_path):
    root = _gray_folder(tmp_path / "g", classes=("a", "b"))
    before = sorted(p for p in tmp_path.rglob("*"))
    load_dataset(root)
    load_dataset(root, in_memory_limit_mb=0)
    assert sorted(p for p in tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------------------------
# the synthetic positive control


def test_pathfinder_is_deterministic_balanced_and_labels_are_connectivity():
    from scipy import ndimage

    x, y = make_pathfinder(n=300, size=24, seed=5)
    x2, y2 = make_pathfinder(n=300, size=24, seed=5)
    x3, _ = make_pathfinder(n=300, size=24, seed=6)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, x3)
    assert x.shape == (300, 24, 24) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [150, 150]
    assert set(np.unique(x).tolist()) == {0, 128, 255}
    eight = np.ones((3, 3), bool)
    for image, label in zip(x, y, strict=True):
        lit, n_parts = ndimage.label(image > 0, structure=eight)
        marks, n_marks = ndimage.label(image == 255, structure=eight)
        assert n_parts == 2  # the curves never touch
        assert n_marks == 2
        centres = ndimage.center_of_mass(image == 255, marks, [1, 2])
        parts = {lit[int(round(r)), int(round(c))] for r, c in centres}
        assert (len(parts) == 1) == bool(label)


def test_pathfinder_distance_position_and_brightness_do_not_give_the_label_away():
    from collections import Counter

    from scipy import ndimage

    size = 32
    x, y = make_pathfinder(n=1000, size=size, seed=0)
    keys = {0: Counter(), 1: Counter()}
    distances = []
    for image, label in zip(x, y, strict=True):
        white = image == 255
        assert white.sum() == 18  # two whole 3x3 marks, never cut by the border
        marks, _ = ndimage.label(white, structure=np.ones((3, 3), bool))
        (r1, c1), (r2, c2) = ndimage.center_of_mass(white, marks, [1, 2])
        distance = np.hypot(r1 - r2, c1 - c2)
        border = min(r1, c1, r2, c2, size - 1 - r1, size - 1 - c1, size - 1 - r2, size - 1 - c2)
        keys[int(label)][(int(distance), min(int(border), 4))] += 1
        distances.append(distance)
    # both classes have exactly the same histogram of mark distance x distance from the border
    assert keys[0] == keys[1]
    # and the marks are often far apart
    assert np.median(distances) > 8


def test_pathfinder_spec_loads_with_parameters_in_few_draws(monkeypatch):
    # Fast because the rejection sampler sizes its batches from the yield so far: count the
    # candidates it draws instead of timing it.
    drawn = []
    draw = _synthetic._pathfinder_batch

    def spy(rng, m, *args):
        drawn.append(m)
        return draw(rng, m, *args)

    monkeypatch.setattr(_synthetic, "_pathfinder_batch", spy)
    data = load_dataset("pathfinder:size=32,n=4000")
    assert len(drawn) <= 2
    assert sum(drawn) < 5 * 4000
    info = data.info
    assert info.name == "pathfinder"
    assert info.source == "synthetic:pathfinder(size=32,n=4000,paths=2,length=40,seed=0)"
    assert info.input_shape == (32, 32, 1)
    assert info.class_names == ("disconnected", "connected")
    assert info.sizes == {"train": 2800, "val": 600, "test": 600}
    small = load_dataset("pathfinder:size=24,n=200,paths=3,seed=4", seed=1)
    assert small.info.input_shape == (24, 24, 1)
    assert small.info.source == "synthetic:pathfinder(size=24,n=200,paths=3,length=30,seed=4)"
    x, _ = small.arrays("train")
    assert set(np.unique(np.round(x * 255)).tolist()) == {0.0, 128.0, 255.0}
    # the generator seed defaults to the load seed
    a = load_dataset("pathfinder:size=16,n=100", seed=3)
    b = load_dataset("pathfinder:size=16,n=100,seed=3", seed=3)
    np.testing.assert_array_equal(a.arrays("train")[0], b.arrays("train")[0])


def test_same_different_is_deterministic_balanced_and_labels_are_equality():
    from scipy import ndimage

    x, y = make_same_different(n=400, size=20, patch=4, seed=2)
    x2, y2 = make_same_different(n=400, size=20, patch=4, seed=2)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, make_same_different(n=400, size=20, patch=4, seed=3)[0])
    assert x.shape == (400, 20, 20) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [200, 200]
    assert set(np.unique(x).tolist()) == {0, 96, 255}
    for image, label in zip(x, y, strict=True):
        parts, count = ndimage.label(image > 0, structure=np.ones((3, 3), bool))
        assert count == 2
        boxes = ndimage.find_objects(parts)
        a, b = (image[box] for box in boxes)
        assert a.shape == b.shape == (4, 4)
        assert (a == 255).sum() == (b == 255).sum()  # brightness gives nothing away
        assert np.array_equal(a, b) == bool(label)
        (r1, c1), (r2, c2) = ((box[0].start, box[1].start) for box in boxes)
        assert max(abs(r1 - r2), abs(c1 - c2)) >= 10  # far apart


def test_same_different_spec():
    data = load_dataset("same_different:size=16,n=200", seed=1)
    assert data.info.input_shape == (16, 16, 1)
    assert data.info.class_names == ("different", "same")
    assert data.info.source == "synthetic:same_different(size=16,n=200,patch=4,seed=1)"
    assert data.info.sizes == {"train": 140, "val": 30, "test": 30}


# --------------------------------------------------------------------------------------------
# every bad input: one DatasetError, the whole message asserted
#
# A row: an id; the spec (a value, or a function of tmp_path that makes the file or folder and
# returns its path); load_dataset's keyword arguments; the message (a string, or a function of
# the path as a string); and whether check_spec, which reads the spec alone, rejects it too.


def _npz(**arrays):
    def make(tmp_path):
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        return path

    return make


def _single_array_npz(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    return path


def _csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2\n")
    return path


def _empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _flat_folder(tmp_path):
    return _save(tmp_path / "flat" / "1.png").parent


def _one_class_folder(tmp_path):
    return _save(tmp_path / "one" / "cats" / "1.png").parent.parent


def _folder_with_imageless_class(tmp_path):
    root = _gray_folder(tmp_path / "noimg", classes=("a", "b"))
    (root / "c").mkdir()
    (root / "c" / "notes.txt").write_text("hello")
    return root


def _example(where):
    return os.path.join(where, "cats", "1.png")


_UNKNOWN = "Unknown dataset {!r}: not a built-in name, nor an existing folder or .npz file. "
_ONE_CLASS_DIGITS = (np.zeros((4, 3, 3)), np.zeros(4, int))
_FEW_C = (np.zeros((12, 4, 4), np.uint8), np.array(["a"] * 5 + ["b"] * 5 + ["c"] * 2))

ERRORS = [
    # names and paths
    pytest.param(
        "cifar", {},
        _UNKNOWN.format("cifar") + "Did you mean 'cifar10'? (see `attn-search datasets`)",
        True, id="unknown-name-close-to-cifar10"),
    pytest.param(
        "mnsit", {},
        _UNKNOWN.format("mnsit") + "Did you mean 'mnist'? (see `attn-search datasets`)",
        True, id="unknown-name-close-to-mnist"),
    pytest.param(
        "imagenet", {},
        _UNKNOWN.format("imagenet") + "Known names: digits, mnist, fashion_mnist, cifar10, "
        "cifar100, pathfinder, same_different, lookup. (see `attn-search datasets`)",
        True, id="unknown-name-lists-known"),
    pytest.param(
        lambda tmp_path: tmp_path / "nope" / "data", {},
        lambda w: f"Dataset path does not exist: {w!r}. Check the path, or use a built-in name "
        "(see `attn-search datasets`).",
        True, id="missing-folder"),
    pytest.param(
        "data.npz", {},
        "Dataset path does not exist: 'data.npz'. Check the path, or use a built-in name "
        "(see `attn-search datasets`).",
        True, id="missing-npz"),
    pytest.param(
        _csv, {},
        lambda w: f"Dataset file {w!r} is not an .npz file; pass a folder with one sub-folder "
        "of images per class, or an .npz file with x_train, y_train (or x, y).",
        True, id="file-not-npz"),
    pytest.param(
        42, {},
        "`spec` must be a dataset name, a folder, an .npz file, a tuple (x, y) of arrays or a "
        "Dataset. Received: spec of type int",
        True, id="spec-of-wrong-type"),
    pytest.param(
        (np.zeros((4, 3, 3)), np.arange(4), None), {},
        "A dataset given as arrays must be a pair (x, y). Received: a tuple of length 3",
        False, id="arrays-not-a-pair"),
    pytest.param(
        "digits:size=3", {},
        "Dataset 'digits' takes no parameters. Received: 'digits:size=3'",
        True, id="builtin-with-parameters"),
    # synthetic parameters
    pytest.param(
        "pathfinder:sise=16", {},
        "Unknown parameter 'sise' for dataset 'pathfinder' in 'pathfinder:sise=16'. "
        "Did you mean 'size'? Known: size, n, paths, length, seed.",
        True, id="synthetic-unknown-parameter"),
    pytest.param(
        "pathfinder:size=4", {},
        "Parameter 'size' of dataset 'pathfinder' must be an integer in [12, 256]. "
        "Received: size='4' in 'pathfinder:size=4'",
        True, id="synthetic-parameter-out-of-range"),
    pytest.param(
        "pathfinder:n=many", {},
        "Parameter 'n' of dataset 'pathfinder' must be an integer in [20, 1000000]. "
        "Received: n='many' in 'pathfinder:n=many'",
        True, id="synthetic-parameter-not-a-number"),
    pytest.param(
        "pathfinder:seed=-1", {},
        "Parameter 'seed' of dataset 'pathfinder' must be an integer in [0, 2147483647]. "
        "Received: seed='-1' in 'pathfinder:seed=-1'",
        True, id="synthetic-seed-negative"),
    pytest.param(
        "pathfinder:size", {},
        "Cannot parse 'pathfinder:size': write parameters as name=value separated by commas, "
        "e.g. 'pathfinder:size=32,n=4000'.",
        True, id="synthetic-parameter-without-value"),
    pytest.param(
        "pathfinder:size=16,n=200,paths=3", {},
        "Could not draw 200 pathfinder images of size 16 with 3 curves of length 20 that do not "
        "touch (kept 14 of 31024 drawn); use fewer or shorter curves, or a larger size.",
        False, id="pathfinder-too-crowded-to-draw"),
    pytest.param(
        "same_different:size=12,patch=5", {},
        "same_different needs size >= 2 * patch + 4 to keep the patterns apart. "
        "Received: size=12, patch=5",
        False, id="same-different-size-rule"),
    # arguments
    pytest.param(
        "digits", {"val_fraction": 1.5},
        "`val_fraction` must be a number in [0, 1). Received: val_fraction=1.5",
        False, id="val-fraction"),
    pytest.param(
        "digits", {"test_fraction": -0.1},
        "`test_fraction` must be a number in [0, 1). Received: test_fraction=-0.1",
        False, id="test-fraction"),
    pytest.param(
        "digits", {"val_fraction": 0.5, "test_fraction": 0.5},
        "`val_fraction` + `test_fraction` must be below 1, to leave examples for training. "
        "Received: val_fraction=0.5, test_fraction=0.5",
        False, id="fractions-sum"),
    pytest.param(
        "digits", {"limit": 0},
        "`limit` must be a positive integer or None. Received: limit=0",
        False, id="limit"),
    pytest.param(
        "digits", {"seed": -1},
        "`seed` must be a non-negative integer. Received: seed=-1",
        False, id="seed"),
    pytest.param(
        "digits", {"image_size": (0, 8)},
        "`image_size` must be (height, width) with positive integers, or one positive integer. "
        "Received: image_size=(0, 8)",
        False, id="image-size"),
    pytest.param(
        "digits", {"in_memory_limit_mb": -1},
        "`in_memory_limit_mb` must be a number >= 0. Received: in_memory_limit_mb=-1",
        False, id="in-memory-limit"),
    # too few examples to split
    pytest.param(
        "digits", {"limit": 20},
        "`limit` is too small for a stratified split of 10 classes in digits: it needs at "
        "least 30 examples. Raise `limit`, or set val_fraction/test_fraction to 0. "
        "Received: limit=20",
        False, id="limit-too-small-to-stratify"),
    pytest.param(
        _FEW_C, {},
        "Class 'c' has only 2 example(s) in arrays; a stratified train/val/test split needs at "
        "least 3 per class. Add examples to that class or remove it, raise `limit`, or set "
        "val_fraction/test_fraction to 0.",
        False, id="class-too-small-to-split"),
    pytest.param(
        _ONE_CLASS_DIGITS, {},
        "the given arrays has 1 class (0); classification needs at least two.",
        False, id="arrays-of-one-class"),
    # .npz files
    pytest.param(
        _npz(images=np.zeros((4, 3, 3)), labels=np.zeros(4)), {},
        lambda w: f"{w} has no 'x_train' and 'y_train' arrays (nor 'x' and 'y'); found: "
        "images, labels. Save it with numpy.savez(path, x_train=images, y_train=labels).",
        False, id="npz-without-x-y"),
    pytest.param(
        _npz(x_train=np.zeros((4, 3, 3)), y_train=np.arange(4) % 2, x_val=np.zeros((2, 3, 3))),
        {}, lambda w: f"{w} has 'x_val' but no 'y_val'; give both or neither.",
        False, id="npz-x-val-without-y-val"),
    pytest.param(
        _npz(x=np.zeros((4, 3, 3)), y=np.arange(5) % 2), {},
        lambda w: f"'x' has 4 images but 'y' has 5 labels in {w}; they must have the same "
        "length.",
        False, id="npz-lengths-differ"),
    pytest.param(
        _npz(x=np.zeros((4, 9)), y=np.arange(4) % 2), {},
        lambda w: f"'x' in {w} has shape (4, 9); images must be (N, H, W), (N, H, W, 1) or "
        "(N, H, W, 3), channels last.",
        False, id="npz-images-2d"),
    pytest.param(
        _npz(x=np.zeros((4, 3, 3, 3, 3)), y=np.arange(4) % 2), {},
        lambda w: f"'x' in {w} has shape (4, 3, 3, 3, 3); images must be (N, H, W), "
        "(N, H, W, 1) or (N, H, W, 3), channels last.",
        False, id="npz-images-5d"),
    pytest.param(
        _npz(x=np.array([[[np.nan]], [[np.inf]], [[0.0]], [[1.0]]]), y=np.arange(4) % 2), {},
        lambda w: f"'x' in {w} has 2 NaN or infinite value(s); replace them or remove those "
        "images.",
        False, id="npz-nan-images"),
    pytest.param(
        _npz(x=np.zeros((4, 3, 3)), y=np.eye(4)), {},
        lambda w: f"'y' in {w} has shape (4, 4); it must hold one label per image, shape (N,) "
        "(for one-hot labels use numpy.argmax(y, axis=1)).",
        False, id="npz-one-hot-labels"),
    pytest.param(
        _npz(x=np.zeros((4, 3, 3)), y=np.array([0, 0.5, 1, 1])), {},
        lambda w: f"'y' in {w} has non-integer labels (e.g. np.float64(0.5)); use integer or "
        "string labels.",
        False, id="npz-non-integer-labels"),
    pytest.param(
        _npz(x=np.zeros((4, 3, 3)), y=np.zeros(4, int)), {},
        lambda w: f"{w} has 1 class (0); classification needs at least two.",
        False, id="npz-one-class"),
    pytest.param(
        _npz(x_train=np.zeros((4, 3, 3)), y_train=np.arange(4) % 2, x_test=np.zeros((2, 5, 5)),
             y_test=np.arange(2)), {},
        lambda w: f"'x_test' images are 5x5x1 but 'x_train' images are 3x3x1 in {w}; every "
        "split must have the same image shape.",
        False, id="npz-split-shapes-differ"),
    pytest.param(
        _npz(x=np.zeros((0, 3, 3)), y=np.zeros(0, int)), {},
        lambda w: f"'x' in {w} is empty; it must hold at least one image.",
        False, id="npz-empty"),
    pytest.param(
        _npz(x=np.zeros((4, 3, 3)), y=np.array(["a", 1, "b", 2], dtype=object)), {},
        lambda w: f"'y' in {w} is stored as Python objects, which are not loaded (unsafe); save "
        "labels as integers or strings, e.g. numpy.asarray(labels, dtype=str).",
        False, id="npz-pickled-labels"),
    pytest.param(
        _single_array_npz, {},
        lambda w: f"{w} holds one array, not named arrays; save it with "
        "numpy.savez(path, x_train=images, y_train=labels).",
        False, id="npy-not-npz"),
    # folders
    pytest.param(
        _empty_folder, {},
        lambda w: f"Dataset folder is empty: {w!r}. Put one sub-folder of images per class in "
        f"it, e.g. {_example(w)!r}.",
        False, id="folder-empty"),
    pytest.param(
        _flat_folder, {},
        lambda w: f"Dataset folder {w!r} has no class sub-folders; put the images of each class "
        f"in a sub-folder named after it, e.g. {_example(w)!r}.",
        False, id="folder-without-class-folders"),
    pytest.param(
        _one_class_folder, {},
        lambda w: f"Dataset folder {w!r} has 1 class sub-folder ('cats'); classification needs "
        "at least two. Add one sub-folder of images per class.",
        False, id="folder-of-one-class"),
    pytest.param(
        _folder_with_imageless_class, {},
        lambda w: f"Class folder {os.path.join(w, 'c')!r} has no images (PNG, JPEG, BMP or GIF); "
        "add images to it or remove it.",
        False, id="folder-class-without-images"),
    pytest.param(
        _corrupt_folder, {},
        lambda w: f"2 image file(s) in {w!r} cannot be read: a/broken.png, b/truncated.jpg. "
        "Fix or remove them, or pass skip_corrupt=True (--skip-corrupt) to skip them.",
        False, id="folder-corrupt-files"),
]  # fmt: skip


def _case(tmp_path, spec, message):
    """-> (the spec, made if it is a file or folder; the whole message expected)."""
    if callable(spec):
        spec = spec(tmp_path)
    return spec, message(str(spec)) if callable(message) else message


@pytest.mark.parametrize("spec, kwargs, message, early", ERRORS)
def test_load_dataset_rejects_with_the_whole_message(tmp_path, spec, kwargs, message, early):
    spec, expected = _case(tmp_path, spec, message)
    with pytest.raises(DatasetError) as e:
        load_dataset(spec, **kwargs)
    assert _message(e) == expected
    assert isinstance(e.value, AttnSearchError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("spec, kwargs, message, early", [p for p in ERRORS if p.values[3]])
def test_check_spec_rejects_what_load_dataset_rejects(tmp_path, spec, kwargs, message, early):
    spec, expected = _case(tmp_path, spec, message)
    with pytest.raises(DatasetError) as e:
        check_spec(spec)
    assert _message(e) == expected


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda data: data.train(0),
         "`batch_size` must be a positive integer. Received: batch_size=0"),
        (lambda data: data.val(True),
         "`batch_size` must be a positive integer. Received: batch_size=True"),
        (lambda data: data.arrays("tran"),
         "`split` must be one of 'train', 'val', 'test'. Received: split='tran'"),
    ],
    ids=["batch-size-zero", "batch-size-bool", "unknown-split"],
)  # fmt: skip
def test_dataset_methods_reject_bad_arguments(call, message):
    data = load_dataset("digits", limit=60)
    with pytest.raises(DatasetError) as e:
        call(data)
    assert _message(e) == message
