"""Stage 3c, search (`make search MODEL=<m>`): an Optuna study of one model's training settings on one CV fold.

Each trial trains the model with the settings Optuna suggests from params.toml's [search.<model>] on
the training rows of fold `search.fold` and scores its last epoch on that fold's held-out rows (inside
a trial nothing is picked: the schedule decays to zero and the last epoch is kept, as everywhere).
Trial 0 is the settings params.toml holds, so every study measures the others against them.

- The study lives in models/<model>/search/study.db (SQLite), named by everything it depends on but
  the number of trials: a rerun with more TRIALS= continues it, a changed space, fold, data or base
  setting starts another study in the same file.
- A trial whose process was killed is marked failed once its heartbeat stops (Optuna's RDBStorage)
  and retried once with the same settings, resuming from its last finished epoch (trainer.fit's checkpoints).
- Pruning: Optuna's MedianPruner at each tenth of a trial's schedule from 30% on, once three trials have
  finished. Trials of different lengths are compared at the same share of their schedules: a longer
  cosine schedule is behind a shorter one at any given epoch, and would be pruned for being long.
- Writes models/<model>/search/metrics.json (Make's target: every trial, the best, McNemar's test of
  the best against trial 0 on the same held-out rows, the `make cv` command that confirms it) and
  reports/search-<model>.md.

The held-out rows choose here, so the best trial's accuracy is biased upwards: a screen, not a figure to
quote. What a winner is worth is measured by `make cv` over all the folds (docs/accuracy.md).
"""

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline import config, provenance
from pipeline import params as params_mod
from pipeline.errors import PipelineError, cli
from pipeline.files import load_npz, outputs, read_json, save_npz, write_json, write_text
from pipeline.stats import mcnemar

PRUNE_FROM = 30  # % of a trial's schedule before it may be pruned: early accuracy says little
PRUNE_AFTER_TRIALS = 3  # finished trials the median needs first
HEARTBEAT_S, GRACE_S = 60, 180  # a trial silent for GRACE_S is taken as killed


def search_dir(model: str) -> Path:
    return config.MODELS_DIR / model / "search"


def study_name(sp: dict) -> str:
    """Everything a trial's result depends on, except how many trials there are."""
    key = {k: v for k, v in sp.items() if k != "trials"} | {"data": provenance.data_sha256()}
    return f"{sp['model']}-fold{sp['fold']}-{params_mod.short_hash(key)}"


def suggest(trial, model: str, space: dict) -> dict:
    """The trial's settings for the searched keys, drawn by Optuna from their spaces."""
    schema = params_mod.section_keys(model)
    chosen = {}
    for key, spec in space.items():
        if "choices" in spec:
            chosen[key] = trial.suggest_categorical(key, spec["choices"])
        elif schema[key][0] is int:
            chosen[key] = trial.suggest_int(
                key, spec["low"], spec["high"], step=spec.get("step", 1), log=spec.get("log", False)
            )
        else:
            chosen[key] = trial.suggest_float(
                key, spec["low"], spec["high"], step=spec.get("step"), log=spec.get("log", False)
            )
    return chosen


def progress_step(epoch: int, epochs: int) -> int | None:
    """The tenth of the schedule (10, 20, ... 100, in %) that epoch `epoch` (0-based) completes, if any."""
    before, after = 10 * epoch // epochs, 10 * (epoch + 1) // epochs
    return 10 * after if after > before else None


def objective(sp: dict, x, y, train_rows, held_rows, out: Path, verbose=2):
    """Optuna's objective: train one trial's settings, return its held-out accuracy."""
    import optuna

    from pipeline.modeling.predict import predict_proba
    from pipeline.modeling.trainer import fit

    def run_trial(trial) -> float:
        import keras

        p = sp["train"] | suggest(trial, sp["model"], sp["space"])
        work = out / "work" / params_mod.short_hash({"params": p, "study": study_name(sp)})

        def report(row: dict) -> None:
            trial.set_user_attr("epochs_run", row["epoch"] + 1)
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
            step = progress_step(row["epoch"], p["epochs"])
            if step is not None:
                trial.report(row["val_accuracy"], step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{row['val_accuracy']:.2%} at {step}% of its schedule, below the median")

        start = time.perf_counter()
        try:
            model, _, _ = fit(
                x[train_rows],
                y[train_rows],
                p,
                work,
                x[held_rows],
                y[held_rows],
                verbose=verbose,
                label=f"trial {trial.number}: ",
                on_epoch=report,
            )
            proba = predict_proba(model, x[held_rows])
        except optuna.TrialPruned:
            shutil.rmtree(work, ignore_errors=True)  # a pruned trial is not resumed
            raise
        finally:
            keras.backend.clear_session()
        save_npz(out / "trials" / f"{study_name(sp)}-{trial.number}.npz", index=held_rows, proba=proba)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        shutil.rmtree(work, ignore_errors=True)
        return float((proba.argmax(axis=1) == y[held_rows]).mean())

    return run_trial


def open_study(sp: dict, out: Path):
    """The study in out/study.db, created with trial 0 (the current settings) queued, or loaded."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is printed by `say` instead
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat's
    out.mkdir(parents=True, exist_ok=True)
    storage = RDBStorage(
        f"sqlite:///{out / 'study.db'}",
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )
    study = optuna.create_study(
        study_name=study_name(sp),
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sp["train"]["seed"]),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=PRUNE_FROM, interval_steps=10
        ),
    )
    if not study.trials:
        study.enqueue_trial({k: sp["train"][k] for k in sp["space"]})  # trial 0: the settings in params.toml
    return study


def finished(study) -> list:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.trials if t.state in states]


def search(sp: dict, x, y, out: Path, verbose=2) -> dict:
    """Run the study up to sp["trials"] finished (complete or pruned) trials; return its summary."""
    import optuna

    from pipeline.modeling.cv import fold_ids

    ids = fold_ids(y, sp["cv"]["folds"], sp["cv"]["seed"])
    train_rows, held_rows = np.flatnonzero(ids != sp["fold"] - 1), np.flatnonzero(ids == sp["fold"] - 1)
    study = open_study(sp, out)
    if len(finished(study)) < sp["trials"]:
        print(
            f"study {study.study_name} ({out / 'study.db'}): {len(finished(study))} of {sp['trials']} trials "
            f"finished; trials train on fold {sp['fold']}'s {len(train_rows):,} training rows and are scored on its "
            f"{len(held_rows):,} held-out rows",
            flush=True,
        )
        done = optuna.study.MaxTrialsCallback(
            sp["trials"], states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        )
        study.optimize(
            objective(sp, x, y, train_rows, held_rows, out, verbose), callbacks=[done, say], gc_after_trial=True
        )
    return summarize(sp, study, y[held_rows], out)


def say(study, trial) -> None:
    settings = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    if trial.state.name == "PRUNED":
        step = max(trial.intermediate_values, default=0)
        result = f"pruned at {step}% of its schedule ({trial.intermediate_values.get(step, float('nan')):.2%})"
    else:
        result = f"{trial.value:.2%}" if trial.value is not None else trial.state.name.lower()
    try:
        best = f"best: trial {study.best_trial.number}, {study.best_value:.2%}"
    except ValueError:
        best = "no trial finished yet"
    print(f"trial {trial.number}: {settings} -> {result} ({best})", flush=True)


def summarize(sp: dict, study, y_held: np.ndarray, out: Path) -> dict:
    import optuna

    complete_state = optuna.trial.TrialState.COMPLETE
    # A pruned trial's value is its last report, not a final accuracy: kept apart, with where it stopped.
    trials = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "params": t.params,
            "accuracy": t.value if t.state == complete_state else None,
            "pruned_at": {
                "percent": max(t.intermediate_values),
                "accuracy": t.intermediate_values[max(t.intermediate_values)],
            }
            if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values
            else None,
            "epochs_run": t.user_attrs.get("epochs_run"),
            "seconds": t.user_attrs.get("seconds"),
        }
        for t in study.trials
        if t.state != optuna.trial.TrialState.WAITING
    ]
    complete = [t for t in study.trials if t.state == complete_state]
    if not complete:
        raise PipelineError(f"search {study.study_name}: no trial finished (see the lines above)")
    base_settings = {k: sp["train"][k] for k in sp["space"]}
    baseline = next((t for t in complete if t.params == base_settings), None)
    best = study.best_trial
    files = {t.number: out / "trials" / f"{study.study_name}-{t.number}.npz" for t in complete}
    verdict = {
        "best": best.number,
        "best_accuracy": best.value,
        "best_params": best.params,
        "baseline": baseline.number if baseline else None,
        "confirm": 'make cv MODEL={} PARAMS="{}"'.format(
            sp["model"], " ".join(f"train.{sp['model']}.{k}={v}" for k, v in best.params.items())
        ),
    }
    if baseline is not None and baseline.number != best.number:
        right = {
            n: load_npz(files[n], verify_first=False)["proba"].argmax(axis=1) == y_held
            for n in (best.number, baseline.number)
        }
        test = mcnemar(right[best.number], right[baseline.number])
        verdict |= {
            "baseline_accuracy": baseline.value,
            "best_only": test["only_first"],
            "baseline_only": test["only_second"],
            "p_value": test["p_value"],
        }
    metrics = {
        "model": sp["model"],
        "study": study.study_name,
        "fold": sp["fold"],
        "held_out_rows": int(len(y_held)),
        "trials": trials,
        **verdict,
        "params": sp,
        "data_sha256": provenance.data_sha256(),
        "run": provenance.run(),
        "outputs": outputs(out, ["study.db"] + [str(f.relative_to(out)) for f in files.values()]),
    }
    text = report(metrics)
    write_text(config.REPORTS_DIR / f"search-{sp['model']}.md", text)
    write_json(out / "metrics.json", metrics)  # last: Make's target
    return metrics


def report(m: dict) -> str:
    """The study as markdown: one row per trial, then what it found and how sure that is."""
    import pandas as pd

    keys = list(m["params"]["space"])
    rows = [
        {
            "trial": t["number"],
            **{k: t["params"].get(k) for k in keys},
            "state": t["state"],
            "held-out accuracy": f"{t['accuracy']:.2%}"
            if t["accuracy"] is not None
            else (f"({t['pruned_at']['accuracy']:.2%} at {t['pruned_at']['percent']}%)" if t["pruned_at"] else ""),
            "epochs run": t["epochs_run"],
            "minutes": round(t["seconds"] / 60, 1) if t["seconds"] else "",
        }
        for t in m["trials"]
    ]
    lines = [
        f"# Search: {m['model']} on fold {m['fold']} ({m['held_out_rows']:,} held-out rows), study {m['study']}",
        "",
        pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g"),
        "",
    ]
    if m.get("p_value") is not None:
        lines.append(
            f"Best: trial {m['best']}, {m['best_accuracy']:.2%} against the current settings' (trial "
            f"{m['baseline']}) {m['baseline_accuracy']:.2%}; McNemar on the same rows: {m['best_only']} / "
            f"{m['baseline_only']} rows, p = {m['p_value']:.2g}."
        )
    elif m["baseline"] == m["best"]:
        lines.append(f"Best: the current settings (trial {m['best']}), {m['best_accuracy']:.2%}.")
    else:
        lines.append(f"Best: trial {m['best']}, {m['best_accuracy']:.2%} (the current settings did not finish).")
    lines += [
        "",
        "These rows chose the winner, so its accuracy here is biased upwards. Confirm it on every fold:",
        "",
        f"    {m['confirm']}",
        "",
    ]
    return "\n".join(lines)


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    args = ap.parse_args(argv)
    from pipeline.modeling import backend

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise PipelineError(
            "make search needs optuna: it is in pyproject.toml's `search` extra (EXTRAS=...,search)"
        ) from None
    out = search_dir(args.model)
    sp = read_json(out / "params.json")
    from pipeline.speed import tune

    sp["train"] = tune.resolve(sp["train"])  # "auto": measured once; every trial trains on that choice
    backend.init(sp["train"]["seed"], backend.choose(sp["train"]))
    data = load_npz(config.PROCESSED_DIR / "train.npz")
    m = search(sp, data["x"], data["y"].astype(np.int64), out)
    print(report(m), end="")


if __name__ == "__main__":
    main()
