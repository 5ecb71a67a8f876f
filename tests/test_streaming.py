"""Folders streamed from disk: native decoding gives PIL's pixels, and the disk cache."""

from __future__ import annotations

import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from attn_search.datasets import load_dataset
from attn_search.datasets._folders import JPEG_DECODE, PIL_DECODE, PNG_DECODE

SIZE = (12, 10)  # (width, height) of most images


def _png16(path, size, rng):
    """A 16-bit RGB PNG (PIL reads it as 8-bit "RGB"; it cannot write one)."""
    w, h = size
    pixels = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in pixels)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _image(mode, size, rng):
    w, h = size
    colour = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    grey = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    if mode == "P":
        return colour.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    if mode == "P-transparent":
        image = colour.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
        image.info["transparency"] = 3
        return image
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode in ("L", "LA", "1"):
        return grey.convert(mode)
    return colour


# name, mode, (width, height), how the streamed pipeline decodes it
FILES = [
    ("rgb.png", "RGB", SIZE, PNG_DECODE),
    ("rgba.png", "RGBA", SIZE, PNG_DECODE),
    ("palette.png", "P", SIZE, PNG_DECODE),
    ("transparent.png", "P-transparent", SIZE, PNG_DECODE),
    ("grey.png", "L", SIZE, PNG_DECODE),
    ("grey_alpha.png", "LA", SIZE, PNG_DECODE),
    ("bits.png", "1", SIZE, PNG_DECODE),
    ("deep.png", "RGB16", SIZE, PNG_DECODE),
    ("photo.jpg", "RGB", SIZE, JPEG_DECODE),
    ("grey.jpeg", "L", SIZE, JPEG_DECODE),
    ("anim.gif", "P", SIZE, PIL_DECODE),
    ("plain.bmp", "RGB", SIZE, PIL_DECODE),
    ("wide.png", "RGB", (20, 7), PIL_DECODE),  # resized
    ("small.jpg", "RGB", (6, 5), PIL_DECODE),  # resized
]


def _every_kind_folder(root):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for name, mode, size, _ in FILES:
            if mode == "RGB16":
                _png16(root / cls / name, size, rng)
            else:
                _image(mode, size, rng).save(root / cls / name)
    return root


def _all(pipeline):
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in pipeline), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _every_kind_folder(tmp_path_factory.mktemp("kinds") / "pets")


def test_streamed_folder_decodes_natively_to_the_pixels_held_in_memory(folder):
    memory = load_dataset(folder, val_fraction=0, test_fraction=0)
    streamed = load_dataset(folder, val_fraction=0, test_fraction=0, in_memory_limit_mb=0)
    assert streamed.info.streaming and streamed.info.input_shape == (10, 12, 3)
    paths = streamed._splits["train"][0]
    expected = {name: kind for name, _, _, kind in FILES}
    names = [p.rsplit("/", 1)[1] for p in paths]
    kinds = dict(zip(names, streamed._reader.kinds(paths).tolist(), strict=True))
    assert kinds == expected
    xs, ys = _all(streamed.train(5, shuffle=False))
    xm, ym = _all(memory.train(5, shuffle=False))
    np.testing.assert_array_equal(ys, ym)
    np.testing.assert_array_equal(xs, xm)


def test_streamed_folder_gives_the_shuffled_batches_held_in_memory(folder):
    """Decoded a batch at a time: the same batches, in the same order, as the data held in
    memory, epoch after epoch, the last one short."""
    memory = load_dataset(folder, val_fraction=0, test_fraction=0)
    streamed = load_dataset(folder, val_fraction=0, test_fraction=0, in_memory_limit_mb=0)
    n = memory.info.sizes["train"]
    assert n % 3
    s_batches, m_batches = streamed.train(3, seed=11), memory.train(3, seed=11)
    for _ in range(2):  # reshuffled each pass, the same way
        pairs = list(zip(s_batches, m_batches, strict=True))
        assert len(pairs) == -(-n // 3)
        for (xs, ys), (xm, ym) in pairs:
            assert xs.dtype == xm.dtype == "float32"
            np.testing.assert_array_equal(ys.numpy(), ym.numpy())
            np.testing.assert_array_equal(xs.numpy(), xm.numpy())


def test_grey_folder_streams_grey_palettes_through_pil(tmp_path):
    root = tmp_path / "g"
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            _image("L", SIZE, rng).save(root / cls / f"{i}.png")
        grey_palette = _image("L", SIZE, rng).convert("P")  # PIL: a grey palette
        grey_palette.save(root / cls / "palette.png")
    memory = load_dataset(root, val_fraction=0, test_fraction=0)
    streamed = load_dataset(root, val_fraction=0, test_fraction=0, in_memory_limit_mb=0)
    assert streamed.info.input_shape == (10, 12, 1)
    paths = streamed._splits["train"][0]
    assert sorted(streamed._reader.kinds(paths).tolist()) == [PIL_DECODE] * 2 + [PNG_DECODE] * 6
    np.testing.assert_array_equal(
        _all(streamed.train(4, shuffle=False))[0], _all(memory.train(4, shuffle=False))[0]
    )


def test_cache_gives_the_same_batches_and_is_read_instead_of_the_files(folder, tmp_path):
    root = shutil.copytree(folder, tmp_path / "pets")
    streamed = load_dataset(root, seed=3, in_memory_limit_mb=0, val_fraction=0.25)
    cache = tmp_path / "run" / "cache"
    cached = streamed.cached(cache)
    assert cached.info == streamed.info and cached.cache_dir == cache
    for make in (lambda d: d.train(3, seed=5), lambda d: d.val(4)):
        xc, yc = _all(make(cached))
        xs, ys = _all(make(streamed))
        np.testing.assert_array_equal(yc, ys)
        np.testing.assert_array_equal(xc, xs)
    files = sorted(p.name for p in cache.iterdir())
    assert [name.split("-")[0] for name in files] == ["train", "val"]  # the test split: unread
    assert all(name.endswith(".npy") and len(name.split("-")[1]) == 20 for name in files)
    x_train, y_train = _all(cached.train(3, seed=5))
    shutil.rmtree(root)  # the images are gone: only the cache can give these batches now
    x_again, y_again = _all(streamed.cached(cache).train(3, seed=5))
    np.testing.assert_array_equal(x_again, x_train)
    np.testing.assert_array_equal(y_again, y_train)
    assert sorted(p.name for p in cache.iterdir()) == files


def test_cache_of_other_files_is_never_read(folder, tmp_path):
    a = load_dataset(folder, seed=0, in_memory_limit_mb=0, val_fraction=0, test_fraction=0)
    b = load_dataset(
        folder, seed=0, in_memory_limit_mb=0, limit=20, val_fraction=0, test_fraction=0
    )
    cache = tmp_path / "cache"
    _all(a.cached(cache).train(8, shuffle=False))
    _all(b.cached(cache).train(8, shuffle=False))
    assert len(list(cache.glob("train-*.npy"))) == 2


def test_cache_of_data_held_in_memory_is_the_dataset_itself(tmp_path):
    data = load_dataset("digits", limit=100)
    assert data.cached(tmp_path / "cache") is data
    assert not (tmp_path / "cache").exists()


class _CacheWatcher:
    """A progress observer that lists the run folder's cache after each search trial."""

    def __init__(self, cache_dir):
        self.cache_dir = cache_dir
        self.seen: list[list[str]] = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def trial_finished(self, *args):
        self.seen.append(sorted(p.name.split("-")[0] for p in self.cache_dir.glob("*.npy")))


def test_run_caches_a_streamed_folder_in_the_run_folder_then_deletes_it(folder, tmp_path):
    from attn_search.runfolder import RunFolder
    from attn_search.runner import run_search

    out = tmp_path / "run"
    watcher = _CacheWatcher(RunFolder(out).cache_dir)
    result = run_search(_tiny_run(folder, out), progress=watcher, cache=True)
    assert result.status == "complete"
    assert watcher.seen == [["train", "val"], ["train", "val"]]  # decoded once, read again
    assert not (out / "cache").exists()


@pytest.mark.parametrize("flags", [{"cache": True}, {"keep_cache": True}, {}])
def test_cache_is_deleted_at_the_end_unless_kept(folder, tmp_path, monkeypatch, flags):
    import attn_search.runner
    from attn_search.runner import run_search

    def execute(run, t_start):  # the search and finalists, without training: a cache file
        run.data.val(2)
        raise KeyboardInterrupt  # whatever ends the run

    monkeypatch.setattr(attn_search.runner, "_execute", execute)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_search(_tiny_run(folder, out), **flags)
    kept = sorted(p.name.split("-")[0] for p in out.glob("cache/*.npy"))
    assert kept == (["val"] if flags.get("keep_cache") else [])
    assert (out / "cache").exists() is bool(flags.get("keep_cache"))


def _tiny_run(folder, out):
    from attn_search.runner import RunConfig

    space = {
        "name": "tiny",
        "backbone": {"blocks": 1, "filters": 4},
        "attention": {"placements": [1]},
        "baselines": {"share": 0},
    }
    data = load_dataset(folder, seed=0, in_memory_limit_mb=0)
    return RunConfig(
        dataset=data, space=space, trials=2, finalists=0, max_epochs=1, out=str(out), quiet=True
    )
