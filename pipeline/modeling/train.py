"""Stage 3, train: fit one model on the fixed split, keep the best epoch, write its metrics.

Outputs in models/<model>/: model.keras, metrics.json (validation accuracy and loss, history,
seconds per epoch, parameter count, the params used, data hash, provenance) and
val_predictions.npz (the validation rows' probabilities, for reports and ensembles).
A killed run resumes from its last finished epoch (Keras BackupAndRestore) on the next call.
"""

import argparse
import importlib.util
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline import config, params as params_mod, provenance
from pipeline.errors import PipelineError, cli
from pipeline.features import load_npz, save_npz
from pipeline.files import atomic_path, read_json, sha256_file, write_json


def split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train indices, validation indices), the same for every model."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    try:
        tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise PipelineError(f"cannot split {len(labels)} rows with data.val_fraction={val_fraction}: {exc}") from None
    return np.sort(tr), np.sort(va)


def make_callbacks(work_dir: Path, log_dir: Path | None, has_val: bool):
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Adds epoch_seconds to the logs (first, so CSVLogger records it)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_seconds"] = time.perf_counter() - self.start

    callbacks = [
        EpochTimer(),
        # Survives SIGINT/SIGTERM/kill: the next run restarts from the last finished epoch.
        keras.callbacks.BackupAndRestore(str(work_dir / "backup")),
        keras.callbacks.CSVLogger(str(work_dir / "history.csv"), append=True),
        keras.callbacks.ModelCheckpoint(str(work_dir / "best.keras"), monitor="val_accuracy" if has_val else "loss",
                                        mode="max" if has_val else "min", save_best_only=True),
    ]
    # TensorBoard's writer is TensorFlow's: log only where it is installed (a JAX-only GPU box has none).
    if log_dir is not None and importlib.util.find_spec("tensorflow") and importlib.util.find_spec("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(str(log_dir)))
    return callbacks


def compile_model(model, p: dict, n_train: int):
    """Adam on a 10% linear warm-up then cosine decay to zero: large steps early, a settled model
    at the end. `constant_lr` (the benchmark's plain baseline) skips the schedule."""
    import keras

    if "constant_lr" in p:
        lr = p["constant_lr"]
    else:
        steps = p["epochs"] * int(np.ceil(n_train / p["batch_size"]))
        lr = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=steps - steps // 10, warmup_target=p["learning_rate"], warmup_steps=steps // 10)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(x, y, p: dict, work_dir: Path, x_val=None, y_val=None, log_dir=None, verbose=2):
    """Train `p["model"]` and return (best model, history rows, replicas). Arrays in, model out."""
    import keras

    from pipeline.modeling import distribute
    from pipeline.modeling.models import build_model

    keras.utils.set_random_seed(p["seed"])
    context, replicas = distribute.scope(p.get("distribute", False))
    with context:
        model = compile_model(build_model(p["model"], augment=p["augment"], seed=p["seed"], **params_mod.architecture(p)), p, len(x))
    if not (work_dir / "backup").exists():
        (work_dir / "history.csv").unlink(missing_ok=True)  # a fresh run, not a resumed one
    has_val = x_val is not None
    model.fit(x, y, batch_size=p["batch_size"], epochs=p["epochs"], shuffle=True,
              validation_data=(x_val, y_val) if has_val else None,
              callbacks=make_callbacks(work_dir, log_dir, has_val), verbose=verbose)
    import pandas as pd

    history = pd.read_csv(work_dir / "history.csv").to_dict("records")
    best = keras.saving.load_model(work_dir / "best.keras")
    return best, history, replicas


def summarize(model, history, p, x_val, y_val, seconds) -> tuple[dict, np.ndarray | None]:
    metrics = {"model": p["model"], "parameters": int(model.count_params())}
    proba = None
    if x_val is not None:
        loss, acc = model.evaluate(x_val, y_val, batch_size=1024, verbose=0)
        proba = model.predict(x_val, batch_size=1024, verbose=0)
        metrics |= {"val_accuracy": float(acc), "val_loss": float(loss), "val_size": int(len(y_val)),
                    "best_epoch": int(np.argmax([h["val_accuracy"] for h in history])) + 1}
    epoch_seconds = [h["epoch_seconds"] for h in history]
    metrics |= {
        "epochs_run": len(history),
        # The first epoch includes compilation; the rest show the steady pace.
        "seconds_first_epoch": round(epoch_seconds[0], 2),
        "seconds_per_epoch": round(float(np.median(epoch_seconds[1:] or epoch_seconds)), 2),
        "train_seconds": round(seconds, 1),
        "history": history,
    }
    return metrics, proba


def quoted_split_accuracy(out_dir: Path, p: dict, as_split_run: dict, **same) -> float | None:
    """What a full-data model can honestly quote: the validation accuracy its very settings
    (`as_split_run`: p with full_data off) scored on the split, read from the model it replaces
    in out_dir, on the same data (and with the `same` metrics). None when that is not what out_dir holds."""
    path = out_dir / "metrics.json"
    if not path.exists():
        return None
    old = read_json(path)
    if old.get("data_sha256") != provenance.data_sha256() or any(old.get(k) != v for k, v in same.items()):
        return None
    if old.get("params") == as_split_run:
        return old.get("val_accuracy")
    if old.get("params") == p:  # a full-data model retrained (say, after a code change): keep its quote
        return old.get("split_val_accuracy")
    return None


def train_model(p: dict, out_dir: Path, data_path: Path, log_dir: Path | None = None, verbose=2) -> dict:
    """Everything `make train` does for one model: split, fit, save atomically, write metrics."""
    from pipeline.modeling import backend

    backend_name = backend.init(p["seed"], p["backend"])
    data = load_npz(data_path)
    x, y = data["x"], data["y"]
    quoted = None
    if p.get("full_data"):
        tr, va = np.arange(len(y)), None
        quoted = quoted_split_accuracy(out_dir, p, {**p, "full_data": False})
    else:
        tr, va = split(y, p["data"]["val_fraction"], p["data"]["split_seed"])
    # The resumable state of an interrupted run, kept per parameter set: changed params start afresh.
    work_dir = out_dir / f".work-{params_mod.short_hash(p)}"
    for stale in out_dir.glob(".work-*"):
        if stale != work_dir:
            shutil.rmtree(stale, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    x_val, y_val = (x[va], y[va]) if va is not None else (None, None)
    start = time.perf_counter()
    model, history, replicas = fit(x[tr], y[tr], p, work_dir, x_val, y_val, log_dir=log_dir, verbose=verbose)
    metrics, proba = summarize(model, history, p, x_val, y_val, time.perf_counter() - start)
    metrics |= {"backend": backend_name, "replicas": replicas, "params": p, "params_hash": params_mod.short_hash(p),
                "data_sha256": provenance.data_sha256(), "train_rows": int(len(tr)),
                "provenance": provenance.collect()}
    if proba is not None:
        save_npz(out_dir / "val_predictions.npz", index=va, y_true=y_val, proba=proba)
    else:  # a full-data model: the split run's predictions no longer describe out_dir's model
        (out_dir / "val_predictions.npz").unlink(missing_ok=True)
        if quoted is not None:
            metrics["split_val_accuracy"] = quoted
    with atomic_path(out_dir / "model.keras") as tmp:
        shutil.copyfile(work_dir / "best.keras", tmp)
    metrics["model_sha256"] = sha256_file(out_dir / "model.keras")
    write_json(out_dir / "metrics.json", metrics)  # last: Make's target, written only on success
    shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


def accuracy_note(metrics: dict) -> str:
    """'validation accuracy 99.10%', or what a full-data model can say in its place."""
    if "val_accuracy" in metrics:
        return f"validation accuracy {metrics['val_accuracy']:.2%}"
    quoted = metrics.get("split_val_accuracy")
    return "trained on all rows" + (f" (these settings: {quoted:.2%} on the validation split)" if quoted is not None else
                                    " (no validation split; train with full_data off first to measure these settings)")


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conv_gru")
    ap.add_argument("--params", type=Path, help="resolved params (default: models/<model>/params.json)")
    ap.add_argument("--out", type=Path, help="output folder (default: models/<model>)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    out_dir = args.out or config.model_dir(args.model)
    p = read_json(args.params or out_dir / "params.json")
    metrics = train_model(p, out_dir, config.PROCESSED_DIR / "train.npz",
                          log_dir=config.LOGS_DIR / args.model, verbose=0 if args.quiet else 2)
    print(f"{args.model}: {accuracy_note(metrics)}, {metrics['parameters']:,} parameters, {metrics['epochs_run']} epochs, "
          f"{metrics['seconds_per_epoch']} s/epoch ({metrics['backend']}) -> {out_dir}/model.keras")


if __name__ == "__main__":
    main()
