"""The GPU check (issue 16): the notebook script itself, on a folder laid out like /kaggle, for four runs.

Run it where a GPU is at hand, under a timeout, with the machine's own Python (notebook mode installs
nothing; the packages of pyproject.toml but TensorFlow must be importable, e.g. JAX plus the keras wheel):

    KERAS_BACKEND=jax timeout 570 python -m pipeline.speed.gpu_check --data <competition zip or folder>

It renders the script `make kernel` pushes (pipeline/kaggle/notebook.py with the code bundle), lays out
<tmp>/input/competitions/digit-recognizer (read-only) and <tmp>/working, and runs the script with
KAGGLE_ROOT=<tmp> for each of: the seed model for 10 epochs, the CNN for 15 epochs in float32, the CNN again
in mixed_float16 (a T4's tensor cores), and the residual net at full width for 5. Each run is
`make submission` there, on the GPU the notebook finds. It prints, and writes to --out as JSON, each run's
GPU, s/epoch (median after the first, which compiles), first epoch's seconds and validation accuracy.
`--epochs-scale` shrinks the epochs and `--params` the models for a smoke run on a CPU (the tests use them, on
a cut of the sample).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from pipeline import config, dataset
from pipeline.errors import PipelineError, cli
from pipeline.kaggle import kernel

# (what it checks, model, epochs, parameters): issue 16's three runs, then issue 32's residual net at
# Doucet's full width (128/256/512 channels, ~16x the CPU width's FLOPs), which only a GPU affords: its
# s/epoch says what a GPU preset of such members would cost, its accuracy after 5 epochs is a sanity check.
RUNS = [
    ("seed model", "conv_gru", 10, []),
    ("cnn float32", "cnn", 15, ["train.cnn.precision=float32"]),
    ("cnn mixed_float16", "cnn", 15, ["train.cnn.precision=mixed_float16"]),
    ("resnet full width", "resnet", 5, ["train.resnet.width=128", "train.resnet.precision=mixed_float16"]),
]


def lay_out_kaggle(root: Path, data: Path) -> None:
    """<root>/input/competitions/digit-recognizer holding the three CSVs, read-only; <root>/working."""
    mount = root / "input" / "competitions" / config.COMPETITION
    mount.mkdir(parents=True)
    # The data stage's own readers: the same zip layouts, member checks and one-line errors.
    (dataset.copy_competition_folder if data.is_dir() else dataset.extract_competition_zip)(data, mount)
    for path in [*mount.iterdir(), mount, mount.parent, root / "input"]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    (root / "working").mkdir()


def run_one(name: str, model: str, epochs: int, params: list[str], data: Path, timeout: float) -> dict:
    """One notebook run in its own /kaggle stand-in; its train metrics, read from the notebook's output archive."""
    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        lay_out_kaggle(root, data)
        settings = {"MODEL": model, "EPOCHS": str(epochs)} | ({"PARAMS": " ".join(params)} if params else {})
        script = root / "notebook.py"
        script.write_text(kernel.render_script(settings, kernel.make_bundle(), accelerator="NvidiaTeslaT4"))
        env = os.environ | {"KAGGLE_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=root / "working",
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        wall = time.monotonic() - start
        record = json.loads((root / "working" / kernel.RECORD).read_text())
        found = {
            "check": name,
            "model": model,
            "epochs": epochs,
            "params": params,
            "gpu": record.get("gpu"),
            "returncode": proc.returncode,
            "wall_seconds": round(wall, 1),
        }
        if proc.returncode != 0:
            return found | {"log_tail": proc.stdout[-2000:]}
        with tarfile.open(root / "working" / kernel.ARCHIVE) as tar:
            metrics = json.load(tar.extractfile(f"models/{model}/metrics.json"))
        return (
            found
            | {k: metrics.get(k) for k in ("seconds_per_epoch", "seconds_first_epoch", "val_accuracy", "backend")}
            | {"precision": metrics["params"].get("precision")}
        )
    finally:
        for path in root.rglob("*"):  # the read-only mount, writable again so it can go
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(root, ignore_errors=True)


def line(r: dict) -> str:
    if r["returncode"] != 0:
        return (
            f"{r['check']}: the notebook exited {r['returncode']} after {r['wall_seconds']:.0f} s; "
            f"its log ends:\n{r['log_tail']}"
        )
    return (
        f"{r['check']}: {r['model']} {r['epochs']} epochs on {r['gpu'] or 'no GPU'}: "
        f"{r['seconds_per_epoch']:.2f} s/epoch "
        f"(first {r['seconds_first_epoch']:.1f} s), validation accuracy {r['val_accuracy']:.2%}, "
        f"{r['backend']}, {r['precision']}, {r['wall_seconds']:.0f} s for the whole notebook"
    )


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=config.SAMPLE_ZIP, help="competition zip or folder (default: the sample)"
    )
    ap.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every run's epochs (a CPU smoke run)")
    ap.add_argument("--timeout", type=float, default=540, help="seconds for all runs together")
    ap.add_argument("--only", action="append", choices=[r[0] for r in RUNS], help="run only this check (repeatable)")
    ap.add_argument(
        "--params", default="", help="parameter overrides for every run, e.g. train.cnn.width=8 (a CPU smoke run)"
    )
    args = ap.parse_args(argv)
    runs = [r for r in RUNS if not args.only or r[0] in args.only]
    if not args.data.exists():
        raise PipelineError(f"--data {args.data}: no such file or folder")
    deadline, results = time.monotonic() + args.timeout, []
    for name, model, epochs, params in runs:
        left = deadline - time.monotonic()
        if left <= 0:
            print(f"{name}: not run, the check's {args.timeout:.0f} s are spent", flush=True)
            break
        result = run_one(
            name, model, max(1, round(epochs * args.epochs_scale)), params + args.params.split(), args.data, left
        )
        results.append(result)
        print(line(result), flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")  # what is done survives a timeout
    if any(r["returncode"] != 0 for r in results) or len(results) < len(runs):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
