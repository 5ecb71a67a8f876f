"""Datasets: names, folders, .npz files and arrays -> train/val/test `tf.data` pipelines.

One resolver, `load_dataset(spec)`, turns what a user has into a `Dataset`:

- a built-in name: ``digits`` (scikit-learn's 8x8 handwritten digits, embedded, the default),
  ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` (through ``keras.datasets``; they
  download on first use), or a synthetic task: ``lookup`` (the positive control that
  attention solves and its twins cannot), ``pathfinder`` or ``same_different``, with optional
  parameters such as ``lookup:size=24,n=6000`` (generated from a seed, no download; see
  `make_lookup`, `make_pathfinder` and `make_same_different`);
- a folder with one sub-folder of images per class (PNG, JPEG, BMP, GIF);
- an ``.npz`` file with ``x_train, y_train`` (optionally ``x_val, y_val, x_test, y_test``) or
  ``x, y``;
- a tuple ``(x, y)`` of arrays, or a `Dataset` (returned as it is).

Every source gives the same thing: images as float32 in [0, 1] with shape (B, H, W, C), integer
labels, stratified train/validation/test splits fixed by ``seed``, and a `DatasetInfo`.

The package imports TensorFlow only inside the functions that build pipelines, so
`available()` and `check_spec()` answer at once. Its private modules, one per concern:

- ``_dataset``: `Dataset`, `DatasetInfo` and the `tf.data` pipelines;
- ``_spec``: resolving a spec (names, paths, ``name:k=v`` parameters), `load_dataset`,
  `check_spec`, `available`;
- ``_splits``: stratified allocation, ``limit``, train/val/test;
- ``_arrays``: ``(x, y)``, .npz files, ``keras.datasets`` and digits;
- ``_folders``: folders of images, in memory or streamed from disk (decoded natively or by PIL);
- ``_cache``: a streamed dataset's decoded images kept on disk (`Dataset.cached`);
- ``_synthetic``: the synthetic tasks and their table of parameters;
- ``_control``: ``lookup``, the positive control;
- ``_folds``: `CrossValidation`, repeated stratified k-fold over the whole dataset.
"""

from attn_search.datasets._control import make_lookup
from attn_search.datasets._dataset import SPLITS, Dataset, DatasetInfo
from attn_search.datasets._folders import DEFAULT_IN_MEMORY_LIMIT_MB, IMAGE_EXTENSIONS
from attn_search.datasets._folds import CrossValidation
from attn_search.datasets._spec import available, check_spec, load_dataset
from attn_search.datasets._synthetic import make_pathfinder, make_same_different

__all__ = [
    "CrossValidation",
    "DEFAULT_IN_MEMORY_LIMIT_MB",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "Dataset",
    "DatasetInfo",
    "available",
    "check_spec",
    "load_dataset",
    "make_lookup",
    "make_pathfinder",
    "make_same_different",
]
