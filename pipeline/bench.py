"""`make bench`: training and prediction speed of each model, against a plain Keras baseline.

Each run is a fresh subprocess (its own backend, its own peak memory), training on the same
split of data/processed/train.npz. The baseline is the study's seed model trained the plain way
(TensorFlow backend, Adam 1e-3, batch 32, 10 epochs), run in the same invocation so the table
gives ratios on this machine rather than absolute times from elsewhere.

Writes bench/results.json and bench/results.md.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.files import write_json, write_text

BENCH_DIR = config.ROOT / "bench"
BASELINE = {"name": "baseline (plain Keras, TF, batch 32)", "model": "conv_gru", "backend": "tensorflow",
            "overrides": {"epochs": 10, "batch_size": 32, "constant_lr": 1e-3}}


def run_one(model: str, overrides: dict, target: float) -> dict:
    """In this process: train `model` on the fixed split, timing every epoch and prediction."""
    from pipeline import params as params_mod
    from pipeline.features import load_npz
    from pipeline.modeling import backend

    p = params_mod.for_model(params_mod.resolve([]), model) | overrides
    backend.init(p["seed"], p["backend"])
    import keras

    from pipeline.modeling.models import build_model
    from pipeline.modeling.train import compile_model, split

    data = load_npz(config.PROCESSED_DIR / "train.npz")
    tr, va = split(data["y"], p["data"]["val_fraction"], p["data"]["split_seed"])
    x, y, xv, yv = data["x"][tr], data["y"][tr], data["x"][va], data["y"][va]
    model_obj = compile_model(build_model(model, augment=p["augment"], seed=p["seed"], **params_mod.architecture(p)), p, len(x))

    epochs = []

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epochs.append({"elapsed": time.perf_counter() - self.start, "val_accuracy": float(logs["val_accuracy"])})

    start = time.perf_counter()
    model_obj.fit(x, y, batch_size=p["batch_size"], epochs=p["epochs"], validation_data=(xv, yv),
                  callbacks=[Clock()], verbose=0)
    train_seconds = time.perf_counter() - start
    reached = next((e["elapsed"] for e in epochs if e["val_accuracy"] >= target), None)
    test = load_npz(config.PROCESSED_DIR / "test.npz")["x"]
    model_obj.predict(test[:1024], batch_size=1024, verbose=0)  # compile outside the timing
    t0 = time.perf_counter()
    model_obj.predict(test, batch_size=1024, verbose=0)
    predict_seconds = time.perf_counter() - t0
    per_epoch = np.diff([0.0] + [e["elapsed"] for e in epochs])
    return {
        "model": model, "backend": keras.backend.backend(), "batch_size": p["batch_size"], "epochs": p["epochs"],
        "train_seconds": round(train_seconds, 1),
        "seconds_first_epoch": round(float(per_epoch[0]), 2),
        "seconds_per_epoch": round(float(np.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch)), 2),
        "train_images_per_second": round(len(x) * p["epochs"] / train_seconds),
        "final_val_accuracy": epochs[-1]["val_accuracy"],
        "best_val_accuracy": max(e["val_accuracy"] for e in epochs),
        "target_accuracy": target,
        "seconds_to_target": None if reached is None else round(reached, 1),
        "predict_images_per_second": round(len(test) / predict_seconds),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }


def measure(entry: dict, target: float) -> dict:
    """Run one entry in a fresh child process (its own backend and memory peak)."""
    env = os.environ | {"KERAS_BACKEND": entry["backend"], "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "pipeline.bench", "--child", json.dumps(entry), "--target", str(target)]
    proc = subprocess.run(cmd, cwd=config.ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise PipelineError(f"benchmark of {entry['name']} failed: {last}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"name": entry["name"], **result}


def markdown(rows: list[dict], baseline: dict) -> str:
    t = pd.DataFrame(rows)
    base_time = baseline["train_seconds"]
    shown = pd.DataFrame({
        "run": t["name"],
        "backend": t["backend"],
        "batch": t["batch_size"],
        "epochs": t["epochs"],
        "s/epoch": t["seconds_per_epoch"],
        "train img/s": t["train_images_per_second"].map("{:,}".format),
        "val. acc.": t["final_val_accuracy"].map("{:.2%}".format),
        f"s to {rows[0]['target_accuracy']:.1%}": t["seconds_to_target"].map(lambda v: "never" if v is None or v != v else v),
        "train s (x baseline)": [f"{s} ({s / base_time:.2f}x)" for s in t["train_seconds"]],
        "predict img/s": t["predict_images_per_second"].map("{:,}".format),
        "peak MiB": t["peak_mib"].map("{:,.0f}".format),
    })
    return shown.to_markdown(index=False) + "\n"


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["conv_gru", "mlp", "lstm", "cnn"])
    ap.add_argument("--backends", default="", help="comma-separated backends to time each model on "
                    "(default: the backend params.toml gives the model)")
    ap.add_argument("--target", type=float, default=0.987, help="validation accuracy for 'seconds to target'")
    ap.add_argument("--epochs", type=int, help="cap every run at this many epochs (a quick smoke run)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        entry = json.loads(args.child)
        print(json.dumps(run_one(entry["model"], entry.get("overrides", {}), args.target)))
        return
    from pipeline import params as params_mod

    params = params_mod.resolve([])
    entries = [BASELINE]
    for m in args.models:
        for b in args.backends.split(",") if args.backends else [params_mod.for_model(params, m)["backend"]]:
            entries.append({"name": f"{m} ({b})", "model": m, "backend": b})
    if args.epochs:
        entries = [e | {"overrides": e.get("overrides", {}) | {"epochs": args.epochs}} for e in entries]
    rows = []
    for entry in entries:
        print(f"benchmarking {entry['name']} ...", flush=True)
        rows.append(measure(entry, args.target))
        print(f"  {rows[-1]['seconds_per_epoch']} s/epoch, {rows[-1]['train_seconds']} s, "
              f"val {rows[-1]['final_val_accuracy']:.2%}, peak {rows[-1]['peak_mib']:.0f} MiB", flush=True)
    table = markdown(rows, rows[0])
    write_json(BENCH_DIR / "results.json", {"rows": rows, "machine": {"cpus": os.cpu_count()}})
    write_text(BENCH_DIR / "results.md", table)
    print(table)


if __name__ == "__main__":
    main()
