"""An ensemble: N members of one architecture, each with its own seed, softmax-averaged.

Every member is its own Make target (models/ensemble/member-<i>/metrics.json), so `make -j`
trains them in parallel and a finished member is never retrained. All members hold out the
same validation split, which no member ever trains on, so the ensemble's validation accuracy
is as honest as a single model's. With train.full_data = true they train on all rows for the
final upload, and the ensemble quotes the accuracy its settings scored on the split.

`assemble` folds the members into one Keras model (input -> members -> Average), so
prediction, reports and submission treat the ensemble like any other model.
"""

import argparse
from pathlib import Path

import numpy as np

from pipeline import config, provenance
from pipeline.errors import PipelineError, cli
from pipeline.files import atomic_path, load_npz, outputs, read_json, save_npz, write_json
from pipeline.modeling.trainer import accuracy_note, mean_history, member_params, quoted_split_accuracy, train_model

ENSEMBLE_DIR = config.model_dir("ensemble")


def member_dir(index: int) -> Path:
    return ENSEMBLE_DIR / f"member-{index}"


def average_model(members: list):
    """One functional model whose output is the mean of the members' softmax outputs."""
    import keras

    inputs = keras.Input((config.IMAGE_SIDE, config.IMAGE_SIDE), name="rows")
    outputs = []
    for i, member in enumerate(members, start=1):
        member.name = f"member_{i}"  # unique names inside the combined model
        outputs.append(member(inputs))
    averaged = keras.layers.Average(name="digit")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, averaged, name="ensemble")


def assemble(n_members: int) -> dict:
    import keras

    from pipeline.modeling.predict import load_model

    p = read_json(ENSEMBLE_DIR / "params.json")
    full_data = p["member"]["full_data"]
    quoted = (
        quoted_split_accuracy(ENSEMBLE_DIR, p, {**p, "member": {**p["member"], "full_data": False}}, members=n_members)
        if full_data
        else None
    )
    member_metrics = [read_json(member_dir(i) / "metrics.json") for i in range(1, n_members + 1)]
    model = average_model([load_model(member_dir(i) / "model.keras") for i in range(1, n_members + 1)])
    # Saved before compiling: an optimizer-free file (nothing to train) that loads without warnings.
    with atomic_path(ENSEMBLE_DIR / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    metrics = {
        "model": "ensemble",
        "members": n_members,
        "member_model": p["member"]["model"],
        "backend": keras.backend.backend(),
        "parameters": int(model.count_params()),
        "member_val_accuracy": [m.get("val_accuracy") for m in member_metrics],
        "epochs_run": member_metrics[0]["epochs_run"],
        # The members' mean curve per epoch, so reports can draw the ensemble's training.
        "history": mean_history([m["history"] for m in member_metrics]),
        "seconds_per_epoch": float(np.mean([m["seconds_per_epoch"] for m in member_metrics])),
        "train_seconds": float(np.sum([m["train_seconds"] for m in member_metrics])),
        "params": p,
        "params_hash": member_metrics[0]["params_hash"],
        "data_sha256": provenance.data_sha256(),
        "provenance": provenance.collect(),
    }
    if full_data:
        (ENSEMBLE_DIR / "val_predictions.npz").unlink(missing_ok=True)
        if quoted is not None:
            metrics["split_val_accuracy"] = quoted
    else:
        first = load_npz(member_dir(1) / "val_predictions.npz")
        x = load_npz(config.PROCESSED_DIR / "train.npz")["x"][first["index"]]
        loss, acc = model.evaluate(x, first["y_true"], batch_size=1024, verbose=0)
        proba = model.predict(x, batch_size=1024, verbose=0)
        metrics |= {"val_accuracy": float(acc), "val_loss": float(loss), "val_size": int(len(x))}
        save_npz(ENSEMBLE_DIR / "val_predictions.npz", index=first["index"], y_true=first["y_true"], proba=proba)
    metrics["outputs"] = outputs(ENSEMBLE_DIR, ["model.keras"] + ([] if full_data else ["val_predictions.npz"]))
    write_json(ENSEMBLE_DIR / "metrics.json", metrics)
    keras.backend.clear_session()
    return metrics


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    member = sub.add_parser("member", help="train member i")
    member.add_argument("--index", type=int, required=True)
    together = sub.add_parser("assemble", help="average members 1..N into models/ensemble/model.keras")
    together.add_argument("--members", type=int, required=True)
    args = ap.parse_args(argv)

    from pipeline.modeling import backend

    if args.command == "member":
        p = member_params(read_json(ENSEMBLE_DIR / "params.json"), args.index)
        m = train_model(  # picks the backend (and measures it where the params say auto)
            p,
            member_dir(args.index),
            config.PROCESSED_DIR / "train.npz",
            log_dir=config.LOGS_DIR / "ensemble" / f"member-{args.index}",
        )
        print(f"ensemble member {args.index} ({p['model']}, seed {p['seed']}): {accuracy_note(m)}")
    else:
        if args.members < 1:
            raise PipelineError("an ensemble needs at least one member")
        backend.init(preferred=backend.choose(read_json(ENSEMBLE_DIR / "params.json")["member"]))
        m = assemble(args.members)
        accs = ", ".join(f"{a:.2%}" for a in m["member_val_accuracy"] if a is not None)
        members = f" (members: {accs})" if "val_accuracy" in m else ""
        print(f"ensemble of {args.members} {m['member_model']}: {accuracy_note(m)}{members}")


if __name__ == "__main__":
    main()
