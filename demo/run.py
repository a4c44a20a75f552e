"""``make demo``: train on the shipped real sample, evaluate, and score a folder of uploads.

Embedded defaults only: local folders, no servers, no cloud account. Uses the offline
ImageNet weights named by $CRACK_MODEL_WEIGHTS when set (the Makefile sets it when the
file is next to the project), else Keras downloads them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from crack_model.cli import main as crack_model

HERE = Path(__file__).resolve().parent


def make_uploads(folder: Path) -> Path:
    """The shipped uploads plus a few broken files, as an inspection team might send."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(HERE / "uploads", folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes-renamed.jpg").write_text("this is a text file with an image extension\n")
    sample = sorted((HERE / "uploads").glob("positive-*.jpg"))[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(sample[: len(sample) // 3])
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/demo"))
    parser.add_argument("--epochs", default="10")
    args = parser.parse_args(argv)
    model = args.out / "model"
    steps = [
        ("train", ["train", "--data", str(HERE / "sample"), "--out", str(model), "--epochs", args.epochs]),
        ("evaluate", ["evaluate", "--model", str(model), "--split", "test", "--out", str(args.out / "evaluation")]),
        (
            "predict",
            [
                "predict",
                str(make_uploads(args.out / "uploads")),
                "--model",
                str(model),
                "--out",
                str(args.out / "predictions.csv"),
            ],
        ),
    ]
    for name, command in steps:
        print(f"\n=== {name}: crack-model {' '.join(command)}", flush=True)
        code = crack_model(command)
        if code:
            return code
    rows = (args.out / "predictions.csv").read_text().splitlines()[1:]
    errors = [row for row in rows if ",error," in row]
    print(f"\nDemo done. {len(rows)} uploads scored ({len(errors)} unreadable, listed with a reason).")
    print(f"  model and training report: {model}")
    print(f"  evaluation:                {args.out / 'evaluation'}")
    print(f"  predictions:               {args.out / 'predictions.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
