"""Stage 2, features: each image as a sequence of 28 rows of 28 pixels, float32 in [0, 1]."""

import argparse

import numpy as np

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.files import atomic_path


def to_sequences(pixels: np.ndarray) -> np.ndarray:
    """(N, 784) uint8 -> (N, 28, 28) float32; row r of an image is pixels r*28 .. r*28+27."""
    return (pixels.reshape(-1, config.IMAGE_SIDE, config.IMAGE_SIDE).astype(np.float32) / 255.0)


def save_npz(path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path) -> dict:
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: run `make data` (or the stage that makes it) first") from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path} is unreadable ({exc}): delete it and rerun make") from None


@cli
def main(argv=None):
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    raw = load_npz(config.RAW_DIR / "arrays.npz")
    save_npz(config.PROCESSED_DIR / "train.npz", x=to_sequences(raw["train_pixels"]), y=raw["train_labels"])
    save_npz(config.PROCESSED_DIR / "test.npz", x=to_sequences(raw["test_pixels"]))
    print(f"data/processed: {len(raw['train_labels']):,} train and {len(raw['test_pixels']):,} test images as 28x28 row sequences")


if __name__ == "__main__":
    main()
