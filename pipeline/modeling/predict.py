"""Stage 4, predict: the saved model's labels for test.csv, written as a checked submission.

Writes submissions/submission.csv (submission-<model>.csv for other models; with --cv the mean of
a cross-validation run's fold models, submission-<model>-cv.csv) and, beside it, <name>.json:
the provenance `make submit` checks before any upload. Inside a Kaggle notebook the file is also
copied to <kaggle root>/working/submission.csv, which the notebook's Submit button takes.
"""

import argparse
import hashlib
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import config, csvcheck, provenance
from pipeline.errors import PipelineError, cli
from pipeline.files import load_npz, read_json, sha256_file, verify, write_bytes, write_json


def load_model(path: Path):
    """Load a .keras file, turning a missing, corrupt or mismatched file into one clear line."""
    import keras

    from pipeline.modeling import augment, batchnorm, schedules  # noqa: F401  (register them for loading)

    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `make train` first")
    verify(path)  # what its stage recorded (a foreign or altered file is set aside, its stage rerun)
    if not zipfile.is_zipfile(path):
        raise PipelineError(f"{path} is not a Keras model file (truncated or corrupt): delete it and run `make train`")
    try:
        model = keras.saving.load_model(path, compile=False)  # predicting needs no optimizer
    except Exception as exc:  # Keras raises many types for a damaged archive
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{path} could not be loaded ({reason[:200]}): delete it and run `make train`") from None
    expected = (None, config.IMAGE_SIDE, config.IMAGE_SIDE)
    if tuple(model.input_shape) != expected:
        raise PipelineError(
            f"{path} expects input shape {tuple(model.input_shape)}, but the data is {expected}: "
            "it was not trained by this pipeline's features"
        )
    return model


# Test-time augmentation: the image itself and its four 1-pixel shifts (rows, columns).
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(N, 28, 28) images moved by (dy, dx) pixels, blank where they move in from outside."""
    out = np.zeros_like(x)
    h, w = x.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def predict_proba(model, x: np.ndarray, tta: bool = False, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities for (N, 28, 28) images; with `tta`, their mean over TTA_SHIFTS."""
    shifts = TTA_SHIFTS if tta else TTA_SHIFTS[:1]
    return np.mean([model.predict(shift(x, dy, dx), batch_size=batch_size, verbose=0) for dy, dx in shifts], axis=0)


def predict_labels(model, x: np.ndarray, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) for a batch of (N, 28, 28) images."""
    proba = predict_proba(model, x, tta)
    return proba.argmax(axis=1).astype(np.int64), proba


def submission_csv(labels: np.ndarray) -> str:
    """Kaggle's format: ImageId 1..N in test order, integer labels."""
    frame = pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels.astype(np.int64)})
    return frame.to_csv(index=False, lineterminator="\n")


def checked_submission(labels: np.ndarray, n_test: int) -> bytes:
    """The file's bytes, validated as Kaggle would read them (format, ids, row count) before any write."""
    data = submission_csv(labels).encode("utf-8")
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "submission.csv"
        probe.write_bytes(data)
        csvcheck.read_submission(probe, n_expected=n_test)
    return data


def write_outputs(out: Path, labels: np.ndarray, model: str, predicted_by: Path, record: dict) -> None:
    """The checked submission, its provenance beside it, and the notebook's copy. The provenance
    (with the file's hash) is written first and the submission, Make's target, last: a kill between
    them leaves the target out of date, never a submission without its record."""
    source = read_json(config.RAW_DIR / "source.json")
    data = checked_submission(labels, n_test=source["rows"]["test"])
    write_json(
        out.with_suffix(".json"),
        {
            "submission": out.name,
            "submission_sha256": hashlib.sha256(data).hexdigest(),
            "model": model,
            # The file the labels came from (a model, or a CV run's predictions): `make submit` checks it.
            "predicted_by": str(predicted_by.relative_to(config.OUT)),
            "predicted_by_sha256": sha256_file(predicted_by),
            **record,
            "data": {
                "origin": source["origin"],
                "from_kaggle": source["from_kaggle"],
                "path": source["path"],
                "test_sha256": source["sha256"]["test.csv"],
                "train_sha256": source["sha256"]["train.csv"],
            },
            "provenance": provenance.collect(),
        },
    )
    write_bytes(out, data)
    if config.IN_NOTEBOOK:
        write_bytes(config.NOTEBOOK_SUBMISSION, data)
    counts = np.bincount(labels, minlength=config.N_CLASSES)
    print(f"{out}: {len(labels):,} predictions from {model} (labels 0-9: {' '.join(map(str, counts))})")


def predict_single(model_name: str) -> None:
    from pipeline.modeling import backend

    model_dir = config.model_dir(model_name)
    metrics = read_json(model_dir / "metrics.json")
    tta = read_json(model_dir / "predict.json")["tta"]
    backend.init(preferred=metrics["backend"])  # the backend it trained fastest on predicts fastest too
    model = load_model(model_dir / "model.keras")
    labels, _ = predict_labels(model, load_npz(config.PROCESSED_DIR / "test.npz")["x"], tta)
    write_outputs(
        config.submission_path(model_name),
        labels,
        model_name,
        model_dir / "model.keras",
        {
            "val_accuracy": metrics.get("val_accuracy"),
            "split_val_accuracy": metrics.get("split_val_accuracy"),  # a full-data model: its settings' split result
            "tta": tta,
            "params": metrics["params"],
            "params_hash": metrics["params_hash"],
        },
    )


def predict_cv(model_name: str) -> None:
    """The mean of the fold models' test probabilities, computed by the CV run (oof.npz)."""
    from pipeline.modeling.cv import contents

    cv_dir = config.cv_dir(model_name)
    metrics = read_json(cv_dir / "metrics.json")
    test_proba = load_npz(cv_dir / "oof.npz")["test_proba"]
    write_outputs(
        config.submission_path(model_name, cv=True),
        test_proba.argmax(axis=1).astype(np.int64),
        model_name,
        cv_dir / "oof.npz",
        {
            "oof_accuracy": metrics["oof_accuracy"],
            "oof_ci95": metrics["oof_ci95"],
            "folds": metrics["cv"]["folds"],
            "repeats": metrics["cv"].get("repeats", 1),
            # repeated k-fold: each row's out-of-fold models averaged (none for one repeat)
            # and a blend's members alone, on the same rows
            **{
                k: metrics[k]
                for k in (
                    "oof_ensemble_accuracy",
                    "oof_ensemble_ci95",
                    "oof_ensemble_rows",
                    "member_oof_accuracy",
                    "member_oof_ci95",
                )
                if k in metrics
            },
            "contains": contents(metrics),  # what a run stopped short by its budget holds
            "params": metrics["params"],
            "params_hash": metrics["params_hash"],
        },
    )


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conv_gru")
    ap.add_argument("--cv", action="store_true", help="the cross-validation run's fold-averaged prediction")
    args = ap.parse_args(argv)
    if args.cv or args.model == "blend":
        predict_cv(args.model)
    else:
        predict_single(args.model)


if __name__ == "__main__":
    main()
