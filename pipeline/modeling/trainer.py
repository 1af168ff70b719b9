"""The trainer every stage that trains shares: `make train`, its ensemble members, CV folds and search trials.

`fit` trains one model for its schedule and keeps its last epoch: no choice is made on the validation
rows (the learning rate decays to zero, so there is nothing to pick). A killed run resumes from its last
finished epoch and ends with the same weights as an uninterrupted one (the checkpoint holds weights,
optimizer and random-generator state, and each epoch's shuffle is drawn from the seed and the epoch
number). `train_model` is everything `make train` does for one model (split, fit, save, metrics);
`member_params` and `mean_history` serve the ensembles (its members, trained alone or per CV fold).
"""

import importlib.util
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np

from pipeline import params as params_mod
from pipeline import provenance
from pipeline.errors import PipelineError
from pipeline.files import atomic_path, load_npz, outputs, read_json, save_npz, write_json


def split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train indices, validation indices), the same for every model."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    try:
        tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise PipelineError(f"cannot split {len(labels)} rows with data.val_fraction={val_fraction}: {exc}") from None
    return np.sort(tr), np.sort(va)


def compile_model(model, p: dict, n_train: int):
    """Adam with a schedule that ends on a settled model (which is why the last epoch is the one
    kept): "cosine", a 10% linear warm-up then cosine decay to zero; "doucet", exponential decay
    from the learning rate to a tenth of it over all epochs but the last, then 1000x lower."""
    import keras

    from pipeline.modeling.schedules import DecayThenTail

    steps_per_epoch = int(np.ceil(n_train / p["batch_size"]))
    steps = p["epochs"] * steps_per_epoch
    if p.get("schedule", "cosine") == "doucet":
        lr = DecayThenTail(p["learning_rate"], decay_steps=max(1, steps - steps_per_epoch))
    else:
        lr = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=steps - steps // 10, warmup_target=p["learning_rate"], warmup_steps=steps // 10
        )
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Curves:
    """The training curves for `make tensorboard`: each epoch's history row as the scalars Keras's
    TensorBoard callback writes (train/ and validation/, epoch_loss, epoch_accuracy), written after
    the epoch. Not that callback itself: it hooks every batch, and a batch hook makes the trainer
    wait for each step's result before starting the next: the seed model's epoch took 3.6-3.9 s
    with it against 2.3-2.9 s without (33,600 rows and the 8,400-row validation pass, JAX, this CPU)."""

    def __init__(self, log_dir: Path | None):
        # TensorBoard's record format and protos, written to a plain file: not TensorFlow's writer, whose import
        # costs ~5.5 s of CPU in every training process under JAX (tensorboard's own EventFileWriter imports
        # TensorFlow too, for gfile, wherever it is installed). Where tensorboard is not installed, no curves.
        self.log_dir = log_dir if log_dir is not None and importlib.util.find_spec("tensorboard") else None
        self.writers = {}

    def _writer(self, split: str):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter

        if split not in self.writers:
            folder = self.log_dir / split
            folder.mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}.pipeline"
            self.writers[split] = RecordWriter(open(folder / name, "ab"))  # open for the run: a line per epoch
            self.writers[split].write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        return self.writers[split]

    def write(self, row: dict) -> None:
        if self.log_dir is None:
            return
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        for split, prefix in (("train", ""), ("validation", "val_")):
            scalars = {k: row[prefix + k] for k in ("loss", "accuracy") if prefix + k in row}
            if not scalars:
                continue
            values = [Summary.Value(tag=f"epoch_{name}", simple_value=value) for name, value in scalars.items()]
            event = Event(wall_time=time.time(), step=row["epoch"], summary=Summary(value=values))
            self._writer(split).write(event.SerializeToString())
            self._writer(split).flush()  # a killed run keeps the epochs it finished


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Epoch `epoch`'s shuffle, a function of (seed, epoch) alone, so a resumed run draws the same."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _rng_variables(model) -> list:
    """The random generators' states (dropout, augmentation). A .keras file leaves them out, so a
    checkpoint keeps them beside it: without them a resumed run draws other masks and warps."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _resume_point(work_dir: Path) -> tuple[list[dict], list, Path | None]:
    """(history so far, generator states, checkpoint after its last epoch) of an interrupted run."""
    state = work_dir / "state.json"
    if not state.exists():
        return [], [], None
    saved = read_json(state)
    return saved["history"], saved["rng"], work_dir / f"epoch-{len(saved['history'])}.keras"


def fit(x, y, p: dict, work_dir: Path, x_val=None, y_val=None, log_dir=None, verbose=2, label="", on_epoch=None):
    """Train `p["model"]` for p["epochs"] epochs; returns (model after its last epoch, history rows,
    replicas). Arrays in, model out. After every epoch the model is checkpointed in work_dir, then
    state.json names that epoch; a rerun with the same work_dir continues from there. `label`
    starts each progress line (CV folds trained side by side print between each other's lines).
    `on_epoch(row)` is called with each finished epoch's history row, after its checkpoint: `make
    search` reports it to Optuna there, and stops a pruned trial by raising."""
    import keras

    from pipeline.modeling import backend, distribute
    from pipeline.modeling.models import build_model
    from pipeline.speed import tune

    p = tune.resolve(p, say=print if verbose else lambda line: None)  # "auto": resolved once, here if not before
    work_dir.mkdir(parents=True, exist_ok=True)
    history, rng, checkpoint = _resume_point(work_dir)
    context, replicas = distribute.scope(distribute.wanted(p.get("distribute", "off")))
    keras.mixed_precision.set_global_policy(p.get("precision", "float32"))  # before any layer is made
    with context:
        if checkpoint is not None:
            from pipeline.modeling import augment, batchnorm, schedules  # noqa: F401  (register them for loading)

            model = keras.saving.load_model(checkpoint)
            for variable, value in zip(_rng_variables(model), rng, strict=True):
                variable.assign(np.asarray(value, dtype=variable.dtype))
            print(f"{label}resuming {p['model']} after epoch {len(history)} of {p['epochs']} ({work_dir})", flush=True)
        else:
            keras.utils.set_random_seed(p["seed"])
            model = build_model(p["model"], seed=p["seed"], **params_mod.build_options(p))
            model = compile_model(model, p, len(x))
    curves = Curves(log_dir)
    validation = backend.validation_data(x_val, y_val, p["batch_size"]) if x_val is not None else None
    if verbose:
        # Data-parallel keeps the recipe's batch and learning rate: each step's batch is split over the replicas.
        split = (
            f" (each batch of {p['batch_size']} split {p['batch_size'] // replicas} per replica)"
            if replicas > 1
            else ""
        )
        print(
            f"{label}training {p['model']} on {len(x):,} rows: {backend.devices()}, {replicas} replica(s){split}, "
            f"backend {keras.backend.backend()}, {p.get('precision', 'float32')}",
            flush=True,
        )
    augment = next((layer for layer in model.layers if layer.name == "augment"), None)
    for epoch in range(len(history), p["epochs"]):
        clean = epoch >= p["epochs"] - p.get("clean_tail", 0)  # the last epochs see the images as they are
        if augment is not None and augment.active == clean:
            augment.active = not clean
            model.train_function = None  # Keras traces the step again, now with (or without) the augmentation
            if keras.backend.backend() == "jax":  # jit's cache keys on the step method, not on the layer's switch
                import jax

                jax.clear_caches()
        order = epoch_order(len(x), p["seed"], epoch)
        start = time.perf_counter()
        logs = model.fit(
            **backend.fit_data(x[order], y[order], p["batch_size"]),
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,
            validation_data=validation,
            verbose=0,
        ).history
        history.append(
            {"epoch": epoch, **{k: float(v[-1]) for k, v in logs.items()}, "epoch_seconds": time.perf_counter() - start}
        )
        curves.write(history[-1])
        if verbose:
            print(label + progress_line(history[-1], p["epochs"]), flush=True)
        saved = work_dir / f"epoch-{epoch + 1}.keras"
        with atomic_path(saved, suffix=".keras") as tmp:
            model.save(tmp)
        rng = [np.asarray(v).tolist() for v in _rng_variables(model)]
        write_json(work_dir / "state.json", {"history": history, "rng": rng})  # a resume now starts here
        (work_dir / f"epoch-{epoch}.keras").unlink(missing_ok=True)
        if on_epoch is not None:
            on_epoch(history[-1])
    return model, history, replicas


def progress_line(row: dict, epochs: int) -> str:
    """'epoch  3/20  loss 0.0812  accuracy 97.51%  val_loss 0.0634  val_accuracy 98.02%  1.9 s'"""
    shown = "  ".join(
        f"{k} {v:.2%}" if k.endswith("accuracy") else f"{k} {v:.4f}"
        for k, v in row.items()
        if k not in ("epoch", "epoch_seconds")
    )
    return f"epoch {row['epoch'] + 1:>2}/{epochs}  {shown}  {row['epoch_seconds']:.1f} s"


def summarize(model, history, p, x_val, y_val, seconds) -> tuple[dict, np.ndarray | None]:
    metrics = {"model": p["model"], "parameters": int(model.count_params())}
    proba = None
    if x_val is not None:
        loss, acc = model.evaluate(x_val, y_val, batch_size=1024, verbose=0)
        proba = model.predict(x_val, batch_size=1024, verbose=0)
        metrics |= {"val_accuracy": float(acc), "val_loss": float(loss), "val_size": int(len(y_val))}
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


def work_dir_for(out_dir: Path, p: dict, rows: np.ndarray) -> Path:
    """The resumable state of an interrupted run, keyed on everything that shapes the weights: the
    params, the data and the training rows. Any other key's leftovers are stale and removed."""
    key = params_mod.short_hash(
        {"params": p, "data": provenance.data_sha256(), "rows": params_mod.short_hash(np.asarray(rows).tolist())}
    )
    work_dir = out_dir / f".work-{key}"
    for stale in out_dir.glob(".work-*"):
        if stale != work_dir:
            shutil.rmtree(stale, ignore_errors=True)
    return work_dir


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


def train_rows(p: dict, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(training rows, validation rows or None for a full-data model)."""
    if p.get("full_data"):
        return np.arange(len(y)), None
    return split(y, p["data"]["val_fraction"], p["data"]["split_seed"])


def train_model(p: dict, out_dir: Path, data_path: Path, log_dir: Path | None = None, verbose=2) -> dict:
    """Everything `make train` does for one model: split, fit, save atomically, write metrics."""
    from pipeline.modeling import backend
    from pipeline.speed import tune

    run_p = tune.resolve(p)  # "auto": the backend and precision measured fastest here
    backend_name = backend.init(p["seed"], backend.choose(run_p))
    data = load_npz(data_path)
    x, y = data["x"], data["y"]
    tr, va = train_rows(p, y)
    quoted = quoted_split_accuracy(out_dir, p, {**p, "full_data": False}) if va is None else None
    work_dir = work_dir_for(out_dir, run_p, tr)
    x_val, y_val = (x[va], y[va]) if va is not None else (None, None)
    start = time.perf_counter()
    model, history, replicas = fit(x[tr], y[tr], run_p, work_dir, x_val, y_val, log_dir=log_dir, verbose=verbose)
    metrics, proba = summarize(model, history, p, x_val, y_val, time.perf_counter() - start)
    metrics |= {
        "backend": backend_name,
        "precision": run_p["precision"],
        "replicas": replicas,
        "params": p,
        "params_hash": params_mod.short_hash(p),
        "data_sha256": provenance.data_sha256(),
        "train_rows": int(len(tr)),
        "provenance": provenance.collect(),
    }
    if proba is not None:
        save_npz(out_dir / "val_predictions.npz", index=va, y_true=y_val, proba=proba)
    else:  # a full-data model: the split run's predictions no longer describe out_dir's model
        (out_dir / "val_predictions.npz").unlink(missing_ok=True)
        if quoted is not None:
            metrics["split_val_accuracy"] = quoted
    with atomic_path(out_dir / "model.keras") as tmp:
        shutil.copyfile(work_dir / f"epoch-{len(history)}.keras", tmp)
    metrics["outputs"] = outputs(out_dir, ["model.keras"] + (["val_predictions.npz"] if proba is not None else []))
    write_json(out_dir / "metrics.json", metrics)  # last: Make's target, written only on success
    shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


def accuracy_note(metrics: dict) -> str:
    """'validation accuracy 99.10%', or what a full-data model can say in its place."""
    if "val_accuracy" in metrics:
        return f"validation accuracy {metrics['val_accuracy']:.2%}"
    quoted = metrics.get("split_val_accuracy")
    return "trained on all rows" + (
        f" (these settings: {quoted:.2%} on the validation split)"
        if quoted is not None
        else " (no validation split; train with full_data off first to measure these settings)"
    )


def member_params(ensemble_params: dict, index: int) -> dict:
    """Ensemble member i (of `make train MODEL=ensemble`, or of a CV fold): the member architecture's
    params with its own seed."""
    member = ensemble_params["member"]
    return {**member, "seed": member["seed"] + 1000 * index}


def mean_history(histories: list[list[dict]]) -> list[dict]:
    """The per-epoch mean of several runs' history rows (an ensemble's members, a CV run's folds)."""
    import pandas as pd

    frame = pd.concat([pd.DataFrame(h) for h in histories])
    return frame.groupby("epoch", as_index=False).mean().to_dict("records")
