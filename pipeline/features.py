"""Stage 2, features: each image as a sequence of 28 rows of 28 pixels, float32 in [0, 1].

Writes data/processed/{train,test}.npz, then features.json (Make's target): their hashes and the
hash of the arrays they came from.
"""

import argparse

import numpy as np

from pipeline import config, provenance
from pipeline.errors import cli
from pipeline.files import load_npz, outputs, save_npz, sha256_file, write_json


def to_sequences(pixels: np.ndarray) -> np.ndarray:
    """(N, 784) uint8 -> (N, 28, 28) float32; row r of an image is pixels r*28 .. r*28+27."""
    return pixels.reshape(-1, config.IMAGE_SIDE, config.IMAGE_SIDE).astype(np.float32) / 255.0


@cli
def main(argv=None):
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    raw = load_npz(config.RAW_DIR / "arrays.npz")
    save_npz(config.PROCESSED_DIR / "train.npz", x=to_sequences(raw["train_pixels"]), y=raw["train_labels"])
    save_npz(config.PROCESSED_DIR / "test.npz", x=to_sequences(raw["test_pixels"]))
    write_json(
        config.PROCESSED_DIR / "features.json",
        {  # last: Make's target
            "from": {"arrays.npz": sha256_file(config.RAW_DIR / "arrays.npz")},
            "outputs": outputs(config.PROCESSED_DIR, ["train.npz", "test.npz"]),
            "run": provenance.run(),
        },
    )
    print(
        f"data/processed: {len(raw['train_labels']):,} train and {len(raw['test_pixels']):,} test images "
        "as 28x28 row sequences"
    )


if __name__ == "__main__":
    main()
