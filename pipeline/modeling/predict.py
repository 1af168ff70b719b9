"""Stage 4, predict: the saved model's labels for test.csv, written as a checked submission.

Writes submissions/submission.csv (submission-<model>.csv for other models) and, beside it,
<name>.json: the provenance `make submit` checks before any upload.
"""

import argparse
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import config, csvcheck, provenance
from pipeline.errors import PipelineError, cli
from pipeline.features import load_npz
from pipeline.files import atomic_path, read_json, sha256_file, write_json


def load_model(path: Path):
    """Load a .keras file, turning a missing, corrupt or mismatched file into one clear line."""
    import keras

    from pipeline.modeling import augment  # noqa: F401  (registers RandomAffine for loading)

    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `make train` first")
    if not zipfile.is_zipfile(path):
        raise PipelineError(f"{path} is not a Keras model file (truncated or corrupt): delete it and run `make train`")
    try:
        model = keras.saving.load_model(path)
    except Exception as exc:  # Keras raises many types for a damaged archive
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{path} could not be loaded ({reason[:200]}): delete it and run `make train`") from None
    expected = (None, config.IMAGE_SIDE, config.IMAGE_SIDE)
    if tuple(model.input_shape) != expected:
        raise PipelineError(f"{path} expects input shape {tuple(model.input_shape)}, but the data is {expected}: "
                            "it was not trained by this pipeline's features")
    return model


def predict_labels(model, x: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) for a batch of (N, 28, 28) images."""
    proba = model.predict(x, batch_size=batch_size, verbose=0)
    return proba.argmax(axis=1).astype(np.int64), proba


def submission_csv(labels: np.ndarray) -> str:
    """Kaggle's format: ImageId 1..N in test order, integer labels."""
    frame = pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels.astype(np.int64)})
    return frame.to_csv(index=False, lineterminator="\n")


def write_submission(path: Path, labels: np.ndarray, n_test: int) -> None:
    """Validate the file's own bytes against test.csv's row count before it replaces `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(submission_csv(labels), encoding="utf-8")
        csvcheck.read_submission(tmp, n_expected=n_test)


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conv_gru")
    args = ap.parse_args(argv)
    from pipeline.modeling import backend

    model_dir = config.model_dir(args.model)
    metrics = read_json(model_dir / "metrics.json")
    backend.init(preferred=metrics["backend"])  # the backend it trained fastest on predicts fastest too
    model = load_model(model_dir / "model.keras")
    x = load_npz(config.PROCESSED_DIR / "test.npz")["x"]
    labels, _ = predict_labels(model, x)
    out = config.submission_path(args.model)
    write_submission(out, labels, n_test=len(x))
    source = read_json(config.RAW_DIR / "source.json")
    write_json(out.with_suffix(".json"), {
        "submission": out.name,
        "submission_sha256": sha256_file(out),
        "model": args.model,
        "model_sha256": sha256_file(model_dir / "model.keras"),
        "val_accuracy": metrics.get("val_accuracy"),
        "split_val_accuracy": metrics.get("split_val_accuracy"),  # a full-data model: its settings' split result
        "params": metrics["params"],
        "params_hash": metrics["params_hash"],
        "data": {"origin": source["origin"], "competition": source["competition"], "path": source["path"],
                 "test_sha256": source["sha256"]["test.csv"], "train_sha256": source["sha256"]["train.csv"]},
        "provenance": provenance.collect(),
    })
    counts = np.bincount(labels, minlength=config.N_CLASSES)
    print(f"{out}: {len(labels):,} predictions from {args.model} (labels 0-9: {' '.join(map(str, counts))})")


if __name__ == "__main__":
    main()
