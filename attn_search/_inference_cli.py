"""`attn-search explain` and `attn-search predict`: their arguments and handlers.

A thin adapter over `attn_search.inference` (`explain`, `predict`), kept beside `cli.py` so that
it stays short; nothing here imports TensorFlow until a handler runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from attn_search._cli_flags import positive_int
from attn_search._cli_quiet import quiet_tensorflow

#: Each command's one-line help and its description (merged into `cli._DESCRIPTIONS`).
DESCRIPTIONS = {
    "explain": (
        "draw a saved model's attention on your images (PNG per layer and head)",
        "Draw the attention of a saved model (a .keras file, or a run folder's best model) on "
        "each image, one PNG per image, attention layer and head: the image with a few query "
        "positions marked, where the head looks on average and from each marked query, and the "
        "predicted class in the title. Images are prepared as the run's dataset was (resized "
        "to the model's input, grey or RGB, scaled to [0, 1]).",
    ),
    "predict": (
        "predict the class of image files or folders with a saved model",
        "Predict the class of each image (files, or folders searched recursively) with a saved "
        "model (a .keras file, or a run folder's best model), prepared as the run's dataset "
        "was. Prints each image's predicted class and its probability; --out writes every "
        "class's probability to a CSV file. Class names come from the run's dataset.",
    ),
}

_MODEL_HELP = "a .keras model file, or a run folder (its best model)"


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds `explain` and `predict` with `command(name, handler, help, description, run_dir)`."""
    p = command("explain", _cmd_explain, *DESCRIPTIONS["explain"], run_dir=False)
    p.add_argument("model", metavar="MODEL_OR_RUN_DIR", help=_MODEL_HELP)
    p.add_argument(
        "--image",
        dest="images",
        nargs="+",
        required=True,
        metavar="PATH",
        help="image files (PNG, JPEG, BMP, GIF) or folders of them",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to write the PNGs. Defaults to an 'explain' folder beside the model "
        "(RUN_DIR/explain for a run folder).",
    )
    p.add_argument(
        "--queries",
        type=positive_int("--queries"),
        default=3,
        help="query positions marked per picture. Defaults to 3.",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the paths written")

    p = command("predict", _cmd_predict, *DESCRIPTIONS["predict"], run_dir=False)
    p.add_argument("model", metavar="MODEL_OR_RUN_DIR", help=_MODEL_HELP)
    p.add_argument(
        "images", nargs="+", metavar="IMAGES", help="image files or folders (searched recursively)"
    )
    p.add_argument("--out", metavar="CSV", help="write every class's probability to this CSV file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _cmd_explain(args: argparse.Namespace) -> int:
    quiet_tensorflow(args)
    from attn_search.inference import explain

    paths = explain(args.model, args.images, args.out, queries=args.queries)
    if args.quiet:
        print("\n".join(str(path) for path in paths))
    else:
        print(f"Wrote {len(paths)} attention map(s) to {paths[0].parent}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    quiet_tensorflow(args)
    from attn_search.formatting import text_table
    from attn_search.inference import predict

    # The progress bar shows on a terminal only (never when piped); --quiet turns it off.
    table = predict(args.model, args.images, args.out, progress=False if args.quiet else None)
    if args.out:
        print(f"Predictions for {len(table)} image(s) written to {args.out}")
    else:
        rows = [
            [row.file, row.predicted_class, f"{row.probability:.3f}"] for row in table.itertuples()
        ]
        print(text_table(["file", "predicted_class", "probability"], rows))
    return 0
