"""`make bench`: the pipeline's training time against a plain Kaggle-notebook baseline, same machine.

1. The baseline, first: pipeline/speed/baseline_notebook.py, a standalone script that imports nothing
   from this project (pandas reads data/raw/*.csv, the same stratified 10% split, the study's model
   in keras.Sequential, Adam 1e-3, batch 32, 10 epochs, predict, to_csv), run with its framework's
   defaults (KERAS_BACKEND=tensorflow, no determinism, default jit_compile).
2. Each model/backend, through `make train`'s own code path: in a fresh folder
   bench/runs/<model>-<backend>, `python -m pipeline.params --model M --out <run>/params.json ...`
   then `python -m pipeline.modeling.train --model M --out <run>` with KERAS_BACKEND set; the
   numbers come from the run's metrics.json.

Every step is a child process whose wall time and peak resident memory (os.wait4's rusage) are
measured here. EPOCHS caps every run, the baseline's included; parameter overrides go to the
pipeline runs only. Writes bench/results.json and bench/results.md.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from pipeline import config, provenance, stage
from pipeline.errors import PipelineError, cli
from pipeline.files import read_json, shown, write_json, write_text
from pipeline.modeling.models import MODELS

BASELINE_SCRIPT = Path(__file__).resolve().parent / "baseline_notebook.py"
BASELINE_EPOCHS = 10
BASELINE_NAME = "baseline (Keras notebook, TF, batch 32)"
TARGET = 0.987  # the study's best figure (98.72%), rounded down


def machine_ticks() -> list[int] | None:
    """The machine's CPU time so far, by state (/proc/stat's first line: user, nice, system, idle,
    iowait, irq, softirq, steal), or None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the machine's CPU time the hypervisor gave to others between two readings: on a
    VM, the reason a timing can run slow while nothing else runs here."""
    if not before or not after or sum(after) <= sum(before):
        return None
    return (after[7] - before[7]) / (sum(after) - sum(before))


def run_child(cmd: list[str], env: dict, log_stem: Path) -> dict:
    """Run one child process, its stdout and stderr to <log_stem>.stdout/.stderr; returns its exit
    code, wall seconds, CPU seconds and peak resident memory (MiB), from os.wait4's rusage of that
    child alone, and the host's steal share over its run."""
    out_path, err_path = log_stem.with_suffix(".stdout"), log_stem.with_suffix(".stderr")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        ticks = machine_ticks()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=config.ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        steal = steal_share(ticks, machine_ticks())
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        lines = [line for line in err_path.read_text(errors="replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise PipelineError(f"`{' '.join(cmd[1:3])}` failed: {last[:300]} (log: {err_path})")
    return {
        "seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "steal": steal,
        "peak_mib": usage.ru_maxrss / 1024,
        "stdout": out_path,
    }  # ru_maxrss: KiB on Linux


def load(*children: dict) -> dict:
    """How much CPU the children got: cores used on average, and the host's steal share."""
    wall = sum(c["seconds"] for c in children)
    steals = [(c["steal"], c["seconds"]) for c in children if c["steal"] is not None]
    return {
        "cores_used": round(sum(c["cpu_seconds"] for c in children) / wall, 2),
        "host_steal": round(sum(s * t for s, t in steals) / sum(t for _, t in steals), 3) if steals else None,
    }


def seconds_to_target(elapsed: list[float], accuracies: list[float], target: float) -> float | None:
    """Seconds into training at the end of the first epoch whose validation accuracy reaches target."""
    return next((t for t, acc in zip(elapsed, accuracies) if acc >= target), None)


def steady_pace(epoch_seconds: list[float]) -> float:
    """Median seconds per epoch after the first (which includes compilation)."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


def run_baseline(run_dir: Path, epochs: int, target: float) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    for name in ("train.csv", "test.csv"):
        if not (config.RAW_DIR / name).is_file():
            raise PipelineError(f"{config.RAW_DIR / name} is missing: run `make data` first")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC")}
    env["KERAS_BACKEND"] = "tensorflow"
    cmd = [
        sys.executable,
        str(BASELINE_SCRIPT),
        "--data-dir",
        str(config.RAW_DIR),
        "--out",
        str(run_dir / "submission.csv"),
        "--epochs",
        str(epochs),
    ]
    child = run_child(cmd, env, run_dir / "notebook")
    timings = None
    for line in child["stdout"].read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                timings = json.loads(line)
            except ValueError:
                pass
    if not timings or "fit_seconds" not in timings:
        raise PipelineError(f"the baseline printed no timings (log: {child['stdout']})")
    elapsed = [e["elapsed"] for e in timings["epochs"]]
    return {
        "name": BASELINE_NAME,
        "kind": "baseline",
        "model": "conv_gru (keras.Sequential)",
        "backend": timings["backend"],
        "batch_size": timings["batch_size"],
        "epochs": timings["epochs_run"],
        "parameters": timings["parameters"],
        "fit_seconds": round(timings["fit_seconds"], 2),
        "seconds_per_epoch": round(steady_pace(list(_diffs(elapsed))), 2),
        "seconds_to_target": _round(seconds_to_target(elapsed, [e["val_accuracy"] for e in timings["epochs"]], target)),
        "val_accuracy": timings["val_accuracy"],
        "process_seconds": round(child["seconds"], 2),
        "peak_mib": round(child["peak_mib"]),
        **load(child),
        "load_seconds": round(timings["load_seconds"], 2),
        "predict_seconds": round(timings["predict_seconds"], 2),
        "val_accuracy_per_epoch": [e["val_accuracy"] for e in timings["epochs"]],
        "epoch_elapsed_seconds": [round(t, 2) for t in elapsed],
        "run_dir": shown(run_dir, config.OUT),
    }


def run_pipeline(model: str, backend: str, run_dir: Path, overrides: list[str], target: float) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    # A cold compilation cache of its own: the time to the target includes compiling, as on a first run.
    env = os.environ | {"KERAS_BACKEND": backend, "JAX_COMPILATION_CACHE_DIR": str(run_dir / "xla-cache")}
    params = run_child(
        [sys.executable, "-m", "pipeline.params", "--model", model, "--out", str(run_dir / "params.json"), *overrides],
        env,
        run_dir / "params",
    )
    train = run_child(
        [sys.executable, "-m", "pipeline.modeling.train", "--model", model, "--out", str(run_dir)],
        env,
        run_dir / "train",
    )
    p = read_json(run_dir / "params.json")
    m = read_json(run_dir / "metrics.json")
    epoch_seconds = [h["epoch_seconds"] for h in m["history"]]
    cumulative = list(_cumsum(epoch_seconds))
    return {
        "name": f"{model} ({m['backend']})",
        "kind": "pipeline",
        "model": model,
        "backend": m["backend"],
        "batch_size": p["batch_size"],
        "epochs": m["epochs_run"],
        "parameters": m["parameters"],
        "fit_seconds": m["train_seconds"],
        "seconds_per_epoch": m["seconds_per_epoch"],
        "seconds_to_target": _round(seconds_to_target(cumulative, [h["val_accuracy"] for h in m["history"]], target)),
        "val_accuracy": m["val_accuracy"],
        "process_seconds": round(params["seconds"] + train["seconds"], 2),
        "peak_mib": round(max(params["peak_mib"], train["peak_mib"])),
        **load(params, train),
        "learning_rate": p["learning_rate"],
        "val_accuracy_per_epoch": [h["val_accuracy"] for h in m["history"]],
        "epoch_elapsed_seconds": [round(t, 2) for t in cumulative],
        "run_dir": shown(run_dir, config.OUT),
    }


def _diffs(cumulative):
    last = 0.0
    for t in cumulative:
        yield t - last
        last = t


def _cumsum(values):
    total = 0.0
    for v in values:
        total += v
        yield total


def _round(value, digits=2):
    return None if value is None else round(value, digits)


def add_ratios(rows: list[dict]) -> None:
    """Every run's fit seconds and seconds to target, each as a multiple of the baseline's full fit."""
    base = rows[0]["fit_seconds"]
    for row in rows:
        row["fit_x_baseline"] = round(row["fit_seconds"] / base, 3)
        t = row["seconds_to_target"]
        row["to_target_x_baseline"] = None if t is None else round(t / base, 3)


def markdown(rows: list[dict], target: float) -> str:
    from tabulate import tabulate

    head = [
        "run",
        "backend",
        "batch",
        "epochs",
        "s/epoch",
        "fit s (x baseline fit)",
        f"s to {target:.1%} (x baseline fit)",
        "val. acc.",
        "process s",
        "peak MiB",
        "cores used",
        "host steal",
    ]
    body = []
    for r in rows:
        t = r["seconds_to_target"]
        body.append(
            [
                r["name"],
                r["backend"],
                str(r["batch_size"]),
                str(r["epochs"]),
                f"{r['seconds_per_epoch']:.2f}",
                f"{r['fit_seconds']:.1f} ({r['fit_x_baseline']:.2f}x)",
                "never" if t is None else f"{t:.1f} ({r['to_target_x_baseline']:.2f}x)",
                f"{r['val_accuracy']:.2%}",
                f"{r['process_seconds']:.1f}",
                f"{r['peak_mib']:,}",
                f"{r['cores_used']:.2f}",
                "-" if r["host_steal"] is None else f"{r['host_steal']:.0%}",
            ]
        )
    # Cells are preformatted text: no re-parsing as numbers (it would print 2.50 s/epoch as 2.5).
    align = ("left", "left") + ("right",) * (len(head) - 2)
    lines = [tabulate(body, head, tablefmt="pipe", colalign=align, disable_numparse=True)]
    notes = [
        "",
        f"Ratios are against the baseline's whole fit ({rows[0]['fit_seconds']:.1f} s, "
        f"{rows[0]['epochs']} epoch{'s' if rows[0]['epochs'] != 1 else ''}).",
        "fit s: the baseline's model.fit(); a pipeline run's train_seconds (its epochs and per-epoch checkpoints).",
        f"s to {target:.1%}: from the start of training to the end of the first epoch at or above it "
        "(a pipeline run: the sum of its epoch_seconds).",
        "val. acc.: after the last epoch, on the same 10% stratified split.",
        "process s / peak MiB: whole child processes. Baseline: one process (read the CSVs, fit, predict the test "
        "rows, write the CSV). Pipeline: `pipeline.params` + `pipeline.modeling.train` (read the cached arrays of "
        "`make features`, fit, evaluate, save the model; no test prediction).",
        f"Measured on {os.cpu_count()} cores of {provenance.cpu_model()}: these times hold for that CPU only.",
        f"cores used: the processes' CPU seconds over their wall seconds (this machine: {os.cpu_count()} cores). "
        "host steal: the share of the machine's CPU time that the hypervisor gave to other guests meanwhile "
        "(/proc/stat): a high share means the run waited for the host.",
    ]
    return "\n".join(lines + notes) + "\n"


def check_overrides(overrides: list[str], models: list[str]) -> list[str]:
    """Refuse parameter overrides that would not reach a benchmarked pipeline run, or would move it
    off the baseline's split; check the rest like every stage does (unknown keys, types, ranges)."""
    from pipeline import params as params_mod

    params = params_mod.resolve(overrides)
    for item in overrides:
        key = item.partition("=")[0]
        parts = key.split(".")
        if parts[0] == "data":
            raise PipelineError(
                f"make bench does not take PARAMS={item}: the baseline's split (10%, seed 42) is "
                "fixed, and every run is measured on it"
            )
        if key == "train.full_data":
            raise PipelineError(
                f"make bench does not take PARAMS={item}: a full-data run has no validation accuracy to compare"
            )
        if parts[0] != "train" or (len(parts) == 3 and parts[1] not in models):
            raise PipelineError(
                f"PARAMS={item} reaches no run of this make bench (it times: {', '.join(models)}; "
                "it takes train.seed, train.distribute and train.<model>.* keys)"
            )
    return params


def positive_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise PipelineError(f"{what} must be a whole number >= 1, got {text!r}")
    return value


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in ("keras", "tensorflow", "jax", "jaxlib", "torch"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated models to time (default: all)")
    ap.add_argument(
        "--backends",
        default="",
        help="comma-separated backends to time each model on (default: the backend its params give it)",
    )
    ap.add_argument("--epochs", help="cap every run, the baseline's included, at this many epochs (a smoke run)")
    ap.add_argument("--target", type=float, default=TARGET, help="validation accuracy for 'seconds to target'")
    ap.add_argument(
        "overrides", nargs="*", help="parameter overrides for the pipeline runs, e.g. train.conv_gru.batch_size=64"
    )
    args = ap.parse_args(argv)
    from pipeline import params as params_mod

    models = [m for m in args.models.replace(",", " ").split() if m]
    if not models:
        raise PipelineError("no models to benchmark (BENCH_MODELS is empty)")
    for m in models:
        if m in ("ensemble", "blend"):
            raise PipelineError(f"make bench times single models, not {m} (BENCH_MODELS: {', '.join(MODELS)})")
    backends = [b for b in args.backends.replace(",", " ").split() if b]
    known = [b for b in params_mod.BACKENDS if b != "auto"]  # a benchmark names the backends it times
    for b in backends:
        if b not in known:
            raise PipelineError(f"unknown backend {b!r} in BENCH_BACKENDS (known: {', '.join(known)})")
    from pipeline.modeling import backend
    from pipeline.speed import tune

    cap = positive_int(args.epochs, "EPOCHS") if args.epochs is not None else None
    params = check_overrides(args.overrides, models)
    plan = []
    for m in models:
        p = params_mod.for_model(params, m)  # refuses an unknown model by name
        extra = [f"train.{m}.epochs={cap}"] if cap is not None and p["epochs"] > cap else []
        # "auto": the backend the training run would pick here (measured once, cached: pipeline/speed/tune.py)
        for b in backends or [backend.choose(tune.resolve(p))]:
            plan.append((m, b, [*args.overrides, *extra]))
    runs = config.BENCH_DIR / "runs"
    started, make_command = time.time(), stage.make_command()

    base_epochs = min(BASELINE_EPOCHS, cap) if cap is not None else BASELINE_EPOCHS
    print(f"bench: {BASELINE_NAME}, {base_epochs} epochs ...", flush=True)
    rows = [run_baseline(runs / "baseline", base_epochs, args.target)]
    _report(rows[-1])
    for m, b, overrides in plan:
        print(
            f"bench: {m} ({b}) via pipeline.params + pipeline.modeling.train"
            f"{' ' + ' '.join(overrides) if overrides else ''} ...",
            flush=True,
        )
        rows.append(run_pipeline(m, b, runs / f"{m}-{b}", overrides, args.target))
        _report(rows[-1])
    add_ratios(rows)
    table = markdown(rows, args.target)
    write_json(
        config.BENCH_DIR / "results.json",
        {
            "command": ["pipeline.speed.bench", *(sys.argv[1:] if argv is None else argv)],
            "target_accuracy": args.target,
            "epochs_cap": cap,
            "overrides": args.overrides,
            "ratios": "fit_x_baseline and to_target_x_baseline divide by the baseline's fit_seconds",
            "make_command": make_command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "rows": rows,
            "wall_seconds": round(time.time() - started, 1),
            "machine": {
                "cpus": os.cpu_count(),
                "cpu": provenance.cpu_model(),
                "platform": platform.platform(),
                **versions(),
            },
        },
    )
    write_text(config.BENCH_DIR / "results.md", table)
    print(table)


def _report(row: dict) -> None:
    t = row["seconds_to_target"]
    print(
        f"  fit {row['fit_seconds']:.1f} s ({row['seconds_per_epoch']:.2f} s/epoch), val {row['val_accuracy']:.2%}, "
        f"target {'never' if t is None else f'{t:.1f} s'}, process {row['process_seconds']:.1f} s, "
        f"peak {row['peak_mib']:,} MiB, {row['cores_used']:.2f} cores used"
        + ("" if row["host_steal"] is None else f", host steal {row['host_steal']:.0%}"),
        flush=True,
    )


if __name__ == "__main__":
    main()
