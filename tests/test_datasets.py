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
    formats = [("png", "RGB"), ("jpg", "L"), ("bmp", "RGB"), ("gif", "P"), ("png", "RGBA"),
               ("jpeg", "RGB")]
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
    assert list(rows) == ["digits", "mnist", "fashion_mnist", "cifar10", "cifar100",
                          "pathfinder", "same_different"]
    assert rows["digits"] == {
        "name": "digits", "shape": (8, 8, 1), "classes": 10, "size": 1797, "download": False,
        "description": "handwritten digits 0-9 from scikit-learn, embedded; the quick default",
    }
    assert rows["cifar100"]["classes"] == 100 and rows["cifar100"]["download"] is True
    assert rows["pathfinder"]["shape"] == (16, 16, 1)
    assert rows["pathfinder"]["size"] == 6000
    assert rows["pathfinder"]["download"] is False
    for row in rows.values():
        assert set(row) == {"name", "shape", "classes", "size", "download", "description"}


def test_available_and_check_spec_do_not_import_tensorflow():
    # As the CLI runs it: the package skips importing the layer when started as attn-search.
    code = (
        "import sys; sys.argv[0] = 'attn-search'; import attn_search.datasets as d; "
        "d.available(); d.check_spec('digits'); d.check_spec('pathfinder:size=16'); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_check_spec_rejects_what_load_dataset_rejects(tmp_path):
    check_spec("digits")
    check_spec("pathfinder:n=100")
    check_spec(tmp_path)
    with pytest.raises(DatasetError) as e:
        check_spec("cifar")
    assert _message(e) == (
        "Unknown dataset 'cifar': not a built-in name, nor an existing folder or .npz file. "
        "Did you mean 'cifar10'? (see `attn-search datasets`)"
    )


# --------------------------------------------------------------------------------------------
# names: errors


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DatasetError) as e:
        load_dataset("mnsit")
    assert _message(e) == (
        "Unknown dataset 'mnsit': not a built-in name, nor an existing folder or .npz file. "
        "Did you mean 'mnist'? (see `attn-search datasets`)"
    )
    assert isinstance(e.value, AttnSearchError) and isinstance(e.value, ValueError)


def test_unknown_name_without_close_match_lists_known_names():
    with pytest.raises(DatasetError) as e:
        load_dataset("imagenet")
    assert _message(e) == (
        "Unknown dataset 'imagenet': not a built-in name, nor an existing folder or .npz file. "
        "Known names: digits, mnist, fashion_mnist, cifar10, cifar100, pathfinder, "
        "same_different. "
        "(see `attn-search datasets`)"
    )


def test_missing_path(tmp_path):
    missing = str(tmp_path / "nope" / "data")
    with pytest.raises(DatasetError) as e:
        load_dataset(missing)
    assert _message(e) == (
        f"Dataset path does not exist: {missing!r}. Check the path, or use a built-in name "
        "(see `attn-search datasets`)."
    )
    with pytest.raises(DatasetError) as e:
        load_dataset("data.npz")
    assert _message(e) == (
        "Dataset path does not exist: 'data.npz'. Check the path, or use a built-in name "
        "(see `attn-search datasets`)."
    )


def test_a_file_that_is_not_npz(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2\n")
    with pytest.raises(DatasetError) as e:
        load_dataset(path)
    assert _message(e) == (
        f"Dataset file {str(path)!r} is not an .npz file; pass a folder with one sub-folder "
        "of images per class, or an .npz file with x_train, y_train (or x, y)."
    )


def test_builtin_names_take_no_parameters():
    with pytest.raises(DatasetError) as e:
        load_dataset("digits:size=3")
    assert _message(e) == "Dataset 'digits' takes no parameters. Received: 'digits:size=3'"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("pathfinder:sise=16",
         "Unknown parameter 'sise' for dataset 'pathfinder' in 'pathfinder:sise=16'. "
         "Did you mean 'size'? Known: size, n, paths, length, seed."),
        ("pathfinder:size=4",
         "Parameter 'size' of dataset 'pathfinder' must be an integer in [12, 256]. "
         "Received: size='4' in 'pathfinder:size=4'"),
        ("pathfinder:n=many",
         "Parameter 'n' of dataset 'pathfinder' must be an integer in [20, 1000000]. "
         "Received: n='many' in 'pathfinder:n=many'"),
        ("pathfinder:size",
         "Cannot parse 'pathfinder:size': write parameters as name=value separated by commas, "
         "e.g. 'pathfinder:size=32,n=4000'."),
    ],
)
def test_synthetic_parameter_errors(spec, message):
    with pytest.raises(DatasetError) as e:
        load_dataset(spec)
    assert _message(e) == message


# --------------------------------------------------------------------------------------------
# arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"val_fraction": 1.5},
         "`val_fraction` must be a number in [0, 1). Received: val_fraction=1.5"),
        ({"test_fraction": -0.1},
         "`test_fraction` must be a number in [0, 1). Received: test_fraction=-0.1"),
        ({"val_fraction": 0.5, "test_fraction": 0.5},
         "`val_fraction` + `test_fraction` must be below 1, to leave examples for training. "
         "Received: val_fraction=0.5, test_fraction=0.5"),
        ({"limit": 0}, "`limit` must be a positive integer or None. Received: limit=0"),
        ({"seed": -1}, "`seed` must be a non-negative integer. Received: seed=-1"),
        ({"image_size": (0, 8)},
         "`image_size` must be (height, width) with positive integers, or one positive integer. "
         "Received: image_size=(0, 8)"),
        ({"in_memory_limit_mb": -1},
         "`in_memory_limit_mb` must be a number >= 0. Received: in_memory_limit_mb=-1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(DatasetError) as e:
        load_dataset("digits", **kwargs)
    assert _message(e) == message


def test_bad_batch_size_and_split():
    data = load_dataset("digits", limit=60)
    with pytest.raises(DatasetError) as e:
        data.train(0)
    assert _message(e) == "`batch_size` must be a positive integer. Received: batch_size=0"
    with pytest.raises(DatasetError) as e:
        data.arrays("tran")
    assert _message(e) == "`split` must be one of 'train', 'val', 'test'. Received: split='tran'"


def test_limit_too_small_for_a_stratified_split():
    with pytest.raises(DatasetError) as e:
        load_dataset("digits", limit=20)
    assert _message(e) == (
        "`limit` is too small for a stratified split of 10 classes in digits: it needs at "
        "least 30 examples. Raise `limit`, or set val_fraction/test_fraction to 0. "
        "Received: limit=20"
    )
    data = load_dataset("digits", limit=20, val_fraction=0, test_fraction=0)
    assert data.info.sizes == {"train": 20, "val": 0, "test": 0}


def test_class_with_too_few_examples():
    x = np.zeros((12, 4, 4), np.uint8)
    y = np.array(["a"] * 5 + ["b"] * 5 + ["c"] * 2)
    with pytest.raises(DatasetError) as e:
        load_dataset((x, y))
    assert _message(e) == (
        "Class 'c' has only 2 example(s) in arrays; a stratified train/val/test split needs at "
        "least 3 per class. Add examples to that class or remove it, raise `limit`, or set "
        "val_fraction/test_fraction to 0."
    )
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
    x16 = (x8.astype(np.uint16) * 257)  # 16-bit images
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


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((4, 3, 3)), "labels": np.zeros(4)},
         "{where} has no 'x_train' and 'y_train' arrays (nor 'x' and 'y'); found: images, "
         "labels. Save it with numpy.savez(path, x_train=images, y_train=labels)."),
        ({"x_train": np.zeros((4, 3, 3)), "y_train": np.arange(4) % 2,
          "x_val": np.zeros((2, 3, 3))},
         "{where} has 'x_val' but no 'y_val'; give both or neither."),
        ({"x": np.zeros((4, 3, 3)), "y": np.arange(5) % 2},
         "'x' has 4 images but 'y' has 5 labels in {where}; they must have the same length."),
        ({"x": np.zeros((4, 9)), "y": np.arange(4) % 2},
         "'x' in {where} has shape (4, 9); images must be (N, H, W), (N, H, W, 1) or "
         "(N, H, W, 3), channels last."),
        ({"x": np.zeros((4, 3, 3, 3, 3)), "y": np.arange(4) % 2},
         "'x' in {where} has shape (4, 3, 3, 3, 3); images must be (N, H, W), (N, H, W, 1) or "
         "(N, H, W, 3), channels last."),
        ({"x": np.array([[[np.nan]], [[np.inf]], [[0.0]], [[1.0]]]), "y": np.arange(4) % 2},
         "'x' in {where} has 2 NaN or infinite value(s); replace them or remove those images."),
        ({"x": np.zeros((4, 3, 3)), "y": np.eye(4)},
         "'y' in {where} has shape (4, 4); it must hold one label per image, shape (N,) (for "
         "one-hot labels use numpy.argmax(y, axis=1))."),
        ({"x": np.zeros((4, 3, 3)), "y": np.array([0, 0.5, 1, 1])},
         "'y' in {where} has non-integer labels (e.g. np.float64(0.5)); use integer or string "
         "labels."),
        ({"x": np.zeros((4, 3, 3)), "y": np.zeros(4, int)},
         "{where} has 1 class (0); classification needs at least two."),
        ({"x_train": np.zeros((4, 3, 3)), "y_train": np.arange(4) % 2,
          "x_test": np.zeros((2, 5, 5)), "y_test": np.arange(2)},
         "'x_test' images are 5x5x1 but 'x_train' images are 3x3x1 in {where}; every split "
         "must have the same image shape."),
        ({"x": np.zeros((0, 3, 3)), "y": np.zeros(0, int)},
         "'x' in {where} is empty; it must hold at least one image."),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError) as e:
        load_dataset(path)
    assert _message(e) == message.format(where=str(path))


def test_npz_with_pickled_labels_and_not_an_npz(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.zeros((4, 3, 3)), y=np.array(["a", 1, "b", 2], dtype=object))
    with pytest.raises(DatasetError) as e:
        load_dataset(path)
    assert _message(e) == (
        f"'y' in {path} is stored as Python objects, which are not loaded (unsafe); save "
        "labels as integers or strings, e.g. numpy.asarray(labels, dtype=str)."
    )
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError) as e:
        load_dataset(broken)
    assert _message(e).startswith(f"Cannot read {broken} as an .npz file (")
    assert _message(e).endswith(
        "); save it with numpy.savez(path, x_train=images, y_train=labels)."
    )
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DatasetError) as e:
        load_dataset(single)
    assert _message(e) == (
        f"{single} holds one array, not named arrays; save it with "
        "numpy.savez(path, x_train=images, y_train=labels)."
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
    got = {np.round(xi[..., 0] * 255).astype(np.float32).tobytes(): int(yi)
           for xi, yi in zip(x, y)}
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


def test_folder_corrupt_files_stop_by_default_and_are_skipped_on_request(tmp_path):
    root = _gray_folder(tmp_path / "g")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = Image.open(root / "b" / "0.png")
    good.save(root / "b" / "truncated.jpg")
    data_bytes = (root / "b" / "truncated.jpg").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(DatasetError) as e:
        load_dataset(root)
    assert _message(e) == (
        f"2 image file(s) in {str(root)!r} cannot be read: a/broken.png, b/truncated.jpg. "
        "Fix or remove them, or pass skip_corrupt=True (--skip-corrupt) to skip them."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(root, skip_corrupt=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
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


def test_folder_structure_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as e:
        load_dataset(empty)
    example = os.path.join(str(empty), "cats", "1.png")
    assert _message(e) == (
        f"Dataset folder is empty: {str(empty)!r}. Put one sub-folder of images per class in "
        f"it, e.g. {example!r}."
    )

    flat = tmp_path / "flat"
    _save(flat / "1.png")
    with pytest.raises(DatasetError) as e:
        load_dataset(flat)
    example = os.path.join(str(flat), "cats", "1.png")
    assert _message(e) == (
        f"Dataset folder {str(flat)!r} has no class sub-folders; put the images of each class "
        f"in a sub-folder named after it, e.g. {example!r}."
    )

    one = tmp_path / "one"
    _save(one / "cats" / "1.png")
    with pytest.raises(DatasetError) as e:
        load_dataset(one)
    assert _message(e) == (
        f"Dataset folder {str(one)!r} has 1 class sub-folder ('cats'); classification needs at "
        "least two. Add one sub-folder of images per class."
    )

    no_images = _gray_folder(tmp_path / "noimg", classes=("a", "b"))
    (no_images / "c").mkdir()
    (no_images / "c" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError) as e:
        load_dataset(no_images)
    assert _message(e) == (
        f"Class folder {str(no_images / 'c')!r} has no images (PNG, JPEG, BMP or GIF); add "
        "images to it or remove it."
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
    for image, label in zip(x, y):
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
    for image, label in zip(x, y):
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


def test_pathfinder_spec_loads_with_parameters_and_is_fast():
    import time

    start = time.perf_counter()
    data = load_dataset("pathfinder:size=32,n=4000")
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0
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


def test_pathfinder_parameters_too_crowded_to_draw():
    with pytest.raises(DatasetError) as e:
        load_dataset("pathfinder:size=16,n=200,paths=3")
    assert _message(e) == (
        "Could not draw 200 pathfinder images of size 16 with 3 curves of length 20 that do not "
        "touch (kept 14 of 31024 drawn); use fewer or shorter curves, or a larger size."
    )


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
    for image, label in zip(x, y):
        parts, count = ndimage.label(image > 0, structure=np.ones((3, 3), bool))
        assert count == 2
        boxes = ndimage.find_objects(parts)
        a, b = (image[box] for box in boxes)
        assert a.shape == b.shape == (4, 4)
        assert (a == 255).sum() == (b == 255).sum()  # brightness gives nothing away
        assert np.array_equal(a, b) == bool(label)
        (r1, c1), (r2, c2) = ((box[0].start, box[1].start) for box in boxes)
        assert max(abs(r1 - r2), abs(c1 - c2)) >= 10  # far apart


def test_same_different_spec_and_its_size_rule():
    data = load_dataset("same_different:size=16,n=200", seed=1)
    assert data.info.input_shape == (16, 16, 1)
    assert data.info.class_names == ("different", "same")
    assert data.info.source == "synthetic:same_different(size=16,n=200,patch=4,seed=1)"
    assert data.info.sizes == {"train": 140, "val": 30, "test": 30}
    with pytest.raises(DatasetError) as e:
        load_dataset("same_different:size=12,patch=5")
    assert _message(e) == (
        "same_different needs size >= 2 * patch + 4 to keep the patterns apart. "
        "Received: size=12, patch=5"
    )
