"""`make submission BUDGET=<minutes>`: the recipe planned to fit a wall-clock budget on this machine, and
kept to it.

As AutoGluon's `time_limit` and FLAML's `time_budget` do, the plan is made from this machine's own
speed: each CV model's seconds per training step, measured by pipeline/speed/tune.py (the same timing
that picks its backend and precision), times the steps of an epoch. The plan keeps the configured
recipe where it fits; otherwise it drops repeats of the k-fold split (cv.repeats, which only measure), then
trains fewer epochs (down to 70% of them), then fewer folds (down to 3), then fewer epochs again (down to
30%), and prints what it chose with its expected minutes. A budget
that not even the smallest plan fits is refused in one line before anything trains. The budget counts from
when the user's `make` began: a clean clone's venv build, the data stage and the timing are spent from it.

The run is anytime: a fold that would end past the deadline is not started (pipeline/modeling/cv.py
reads PIPELINE_DEADLINE), and when the run stops short, at the deadline or by Ctrl-C, the finished folds
are assembled into the submission they make, labelled with what it holds ("cnn: folds 1-3 of 5").
Without BUDGET=, `make submission` prints the same estimate and runs the recipe as configured.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from pipeline import config, stage
from pipeline import params as params_mod
from pipeline.errors import PipelineError, cli

# Epoch fractions tried in order, with the fold counts each may use (see the module's docstring).
EPOCH_STEPS_FULL_FOLDS = (1.0, 0.85, 0.7)
EPOCH_STEPS_FEWER = (0.55, 0.4, 0.3)
MIN_FOLDS = 3
# Each epoch also predicts its held-out fold and checkpoints: measured on the CNN here, ~8% over the steps.
EPOCH_OVERHEAD = 1.1
FOLD_STARTUP_SECONDS = 20  # a fold's process: imports, data, compiling the step
ASSEMBLY_SECONDS = 60  # predicting each model's test rows and the blend, per model
DEADLINE_ENV = "PIPELINE_DEADLINE"


@dataclass(frozen=True)
class Cost:
    """One CV model's measured cost: seconds per training step, steps per epoch at `folds` folds."""

    model: str
    seconds_per_step: float
    batch_size: int
    epochs: int

    def epoch_seconds(self, rows: int, folds: int) -> float:
        steps = math.ceil(rows * (folds - 1) / folds / self.batch_size)
        return steps * self.seconds_per_step * EPOCH_OVERHEAD

    def fold_seconds(self, rows: int, folds: int, epochs: int) -> float:
        return FOLD_STARTUP_SECONDS + epochs * self.epoch_seconds(rows, folds)

    def run_seconds(self, rows: int, folds: int, epochs: int) -> float:
        return folds * self.fold_seconds(rows, folds, epochs) + ASSEMBLY_SECONDS


@dataclass(frozen=True)
class Plan:
    folds: int
    epochs: dict[str, int]
    seconds: float
    repeats: int = 1

    def overrides(self) -> list[str]:
        return [f"cv.folds={self.folds}", f"cv.repeats={self.repeats}"] + [
            f"train.{m}.epochs={e}" for m, e in self.epochs.items()
        ]

    def describe(self, configured_folds: int, costs: list[Cost]) -> str:
        parts = [
            f"{c.model} {self.epochs[c.model]} epochs"
            + (f" (of {c.epochs})" if self.epochs[c.model] != c.epochs else "")
            for c in costs
        ]
        folds = f"{self.folds} folds" + (f" (of {configured_folds})" if self.folds != configured_folds else "")
        repeats = f" x {self.repeats} repeats" if self.repeats > 1 else ""
        return f"{folds}{repeats} x {', '.join(parts)}: ~{minutes(self.seconds)} here"


def minutes(seconds: float) -> str:
    m = seconds / 60
    return f"{m / 60:.0f} h {m % 60:.0f} min" if m >= 90 else f"{m:.0f} min"


def plan(
    costs: list[Cost], rows: int, folds: int, budget_seconds: float | None, repeats: int = 1, spent: float = 0.0
) -> Plan:
    """The largest plan that fits what is left of the budget once `spent` seconds are gone (the configured
    recipe without one); PipelineError naming the smallest plan's time when none fits."""

    def make(f: int, scale: float, r: int = 1) -> Plan:
        epochs = {c.model: max(1, round(c.epochs * scale)) for c in costs}
        return Plan(f, epochs, r * sum(c.run_seconds(rows, f, epochs[c.model]) for c in costs), r)

    configured = make(folds, 1.0, repeats)
    if budget_seconds is None:
        return configured
    tries = [make(folds, 1.0, r) for r in range(repeats, 1, -1)]
    tries += [make(f, s) for s in EPOCH_STEPS_FULL_FOLDS for f in range(folds, min(folds, MIN_FOLDS) - 1, -1)]
    tries += [make(min(folds, MIN_FOLDS), s) for s in EPOCH_STEPS_FEWER]
    for candidate in sorted(tries, key=lambda p: -_value(p, configured)):
        if candidate.seconds <= budget_seconds - spent:
            return candidate
    smallest = tries[-1]
    gone = f" ({minutes(spent)} of it spent before the plan)" if spent >= 30 else ""
    raise PipelineError(
        f"BUDGET={budget_seconds / 60:g} min{gone} cannot fit even the smallest plan here "
        f"({smallest.describe(folds, costs)}): raise BUDGET, or choose a cheaper MODEL"
    )


def _value(p: Plan, configured: Plan) -> float:
    """The order plans are preferred in: repeats dropped first, then epochs kept to 70%, then folds down
    to 3, then epochs."""
    scale = min(p.epochs[m] / configured.epochs[m] for m in p.epochs)
    return (scale >= 0.7) * 1000 + p.folds * 100 + scale * 10 + p.repeats * 0.1


def expected_accuracy(model: str, p: Plan) -> str:
    """The OOF accuracy of the last finished CV run of `model` here (the frontier's points), said to be of
    these settings only when it is."""
    from pipeline.speed.frontier import cv_runs

    m = cv_runs().get(model)
    if m is None:
        return "expected accuracy unknown (no finished CV run of it here: `make frontier` lists them)"
    same = (
        model != "blend"
        and (m["cv"]["folds"], m["cv"].get("repeats", 1)) == (p.folds, p.repeats)
        and m["params"].get("epochs") == p.epochs.get(model)
    )
    how = (
        "a finished run of these settings"
        if same
        else f"the last {model} run here, {m['cv']['folds']} folds; not this plan"
    )
    return f"expected OOF accuracy {m['oof_accuracy']:.2%} ({how})"


# ---------------------------------------------------------------- the machine's costs


def cv_models(model: str, params: dict) -> list[str]:
    return params["blend"]["models"] if model == "blend" else [model]


def costs(model: str, params: dict, measure: bool = True) -> list[Cost] | None:
    """Each CV model's measured cost, timing it first where the cache lacks it (None where nothing is
    measured and `measure` is off, or PIPELINE_TUNE=off)."""
    from pipeline.speed import tune

    found = []
    for name in cv_models(model, params):
        p = params_mod.for_model(params, params["ensemble"]["model"] if name == "ensemble" else name)
        run = tune.resolve(p, measure=measure, say=print)  # a timing made here says so, not a minute of silence
        timings = tune.cached_timings(p)
        per_step = timings.get(f"{run['backend']} {run['precision']}")
        if per_step is None and (not measure or os.environ.get("PIPELINE_TUNE") == "off"):
            return None
        if per_step is None:  # explicit settings: time just them
            per_step = tune.probe(run, run["backend"], run["precision"])
        if per_step is None:
            raise PipelineError(f"{name}: could not time a training step on this machine")
        members = params["ensemble"]["members"] if name == "ensemble" else 1
        found.append(Cost(name, per_step * members, p["batch_size"], p["epochs"]))
    return found


def rows_in_data() -> int:
    import numpy as np

    with np.load(config.PROCESSED_DIR / "train.npz") as data:
        return len(data["y"])


# ---------------------------------------------------------------- running it


def run(model: str, overrides: list[str], budget_min: float | None) -> int:
    """Plan, print, run `make submission` with the plan; when it stops short, assemble what finished. The
    budget counts from the user's `make`: what ran before the plan (building .venv, the data stage, timing a
    step) is spent from it."""
    start = stage.make_started() or time.time()
    params = params_mod.resolve(overrides)
    folds = params["cv"]["folds"]
    # The same target again, planned; the make variables of this run reach it through MAKEFLAGS.
    again = ["make", "--no-print-directory", "submission", "PLANNED=1", "BUDGET="]
    found = costs(model, params)  # measured here once (the first fold would time it anyway), then cached
    if found is None:  # no timing here, and none wanted: run as configured
        print(f"plan: the recipe as configured; its time here is not measured ({model})", flush=True)
        return subprocess.call(again)
    spent = time.time() - start
    budget = budget_min * 60 if budget_min else None
    chosen = plan(found, rows_in_data(), folds, budget, params["cv"]["repeats"], spent=spent)
    print(f"plan: {chosen.describe(folds, found)}; {expected_accuracy(model, chosen)}", flush=True)
    if budget_min is None:
        return subprocess.call(again)
    deadline = start + budget
    cmd = [*again, "EPOCHS=", "FOLDS=", f"PARAMS={' '.join([*overrides, *chosen.overrides()])}"]
    print(
        f"BUDGET={budget_min:g}: {minutes(spent)} spent since `make` began (venv, data, timing); "
        f"running {shlex.join(cmd)} until {time.strftime('%H:%M', time.localtime(deadline))}"
    )
    proc = subprocess.Popen(cmd, env=os.environ | {DEADLINE_ENV: str(deadline)}, start_new_session=True)
    try:
        code = proc.wait(timeout=max(1.0, deadline - time.time()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as stop:
        why = "the budget ran out" if isinstance(stop, subprocess.TimeoutExpired) else "interrupted"
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        code = None
        print(f"BUDGET={budget_min:g}: {why}; the submission is assembled from the finished folds", flush=True)
    if code == 0:
        return 0
    partial(model, [*overrides, *chosen.overrides()])
    return 0


def partial(model: str, overrides: list[str]) -> None:
    """The submission of the folds that finished: each CV model assembled from its finished folds, the
    blend of them on the rows they share, then the submission, labelled with what it holds."""
    params = params_mod.resolve(overrides)
    folds = str(params["cv"]["folds"])

    def python(*args: str) -> None:
        subprocess.run([sys.executable, "-m", *args], check=True)

    for name in cv_models(model, params):
        # The run may have stopped before it wrote the model's prediction settings.
        python(
            "pipeline.params",
            "--predict",
            "--model",
            name,
            "--out",
            str(config.model_dir(name) / "predict.json"),
            *overrides,
        )
        repeats = str(params["cv"]["repeats"])
        python(
            "pipeline.modeling.cv", "assemble", "--model", name, "--folds", folds, "--repeats", repeats, "--finished"
        )
    if model == "blend":
        python("pipeline.modeling.blend", "--models", *params["blend"]["models"])
    python("pipeline.modeling.predict", "--model", model, "--cv")


def fold_estimate(p: dict, train_rows: int) -> float:
    """Seconds one fold of resolved params `p` takes here, from the tuning cache; 0 when not measured."""
    from pipeline.speed import tune

    timings = tune.cached_timings(p)
    per_step = timings.get(f"{p['backend']} {p['precision']}")
    if per_step is None:
        return 0.0
    return FOLD_STARTUP_SECONDS + p["epochs"] * math.ceil(train_rows / p["batch_size"]) * per_step * EPOCH_OVERHEAD


def deadline_refuses(seconds: float) -> str | None:
    """Why a step of `seconds` must not start under PIPELINE_DEADLINE (None when it fits or there is none)."""
    deadline = os.environ.get(DEADLINE_ENV)
    if not deadline:
        return None
    left = float(deadline) - time.time()
    if seconds <= left:
        return None
    return f"not started: it takes ~{minutes(seconds)} here and the budget has {minutes(max(0, left))} left"


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--budget", type=float, help="minutes")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        raise PipelineError(f"BUDGET={args.budget:g}: must be a number of minutes above 0")
    sys.exit(run(args.model, args.overrides, args.budget))


if __name__ == "__main__":
    main()
