"""Stage 3b, cross-validation: k fold models, out-of-fold (OOF) predictions for every labelled row.

The labelled rows are split into `cv.folds` stratified folds (`cv.seed`). Fold model k trains on
the other folds for its full schedule and keeps its last epoch: nothing is chosen on its
held-out fold, so the OOF accuracy over all rows is an honest estimate of one such model on new
data. Each fold is its own Make target (models/<model>/cv/fold-<k>/metrics.json, k = 1..folds):
resumable, never retrained once finished; mk/cv.mk trains a JAX model's folds one per core at a time.

`assemble` predicts each fold's held-out rows and the test set with its fold model (with
test-time augmentation when `predict.tta`), and writes models/<model>/cv/:
  oof.npz       index, y_true, proba (N x 10, OOF), fold (0-based id per row), test_proba (the
                fold models' mean)
  metrics.json  OOF accuracy with its 95% interval, per-fold accuracy, log loss, timings, params.
The test prediction averages k models that each saw (k-1)/k of the rows, so it is at least as
good as one of them: the OOF figure errs on the pessimistic side.

Repeated k-fold (`cv.repeats` = R > 1) measures that average instead of bounding it: repeat r splits
the rows again with seed `cv.seed + r`, fold models k = 1..folds x R (repeat (k-1) // folds), and every
row gets R out-of-fold predictions from R different models. Their mean, scored, is the OOF accuracy of an
R-model average ("ensemble OOF"; the test prediction averages folds x R models, each on more rows, so it
is expected to do at least as well); the single-model figure stays repeat 1's, comparable with every other
run. It costs R times the training.

MODEL=ensemble trains `ensemble.members` members per fold (each its own seed) and averages them.
"""

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline import config, provenance, stats
from pipeline import params as params_mod
from pipeline.errors import PipelineError, cli
from pipeline.files import atomic_path, load_npz, outputs, read_json, save_npz, write_json
from pipeline.modeling.trainer import fit, mean_history, member_params, work_dir_for

MAX_REPEATS = params_mod.CV_KEYS["repeats"][2]


def fold_ids(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold, 0..folds-1: stratified, so every fold has the labels' proportions."""
    from sklearn.model_selection import StratifiedKFold

    ids = np.empty(len(y), dtype=np.int64)
    try:
        for k, (_, held) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y)):
            ids[held] = k
    except ValueError as exc:
        raise PipelineError(f"cannot split {len(y)} rows into cv.folds={folds}: {exc}") from None
    return ids


def assignments(y: np.ndarray, cv: dict, repeats: int) -> list[np.ndarray]:
    """Each repeat's fold of every row (repeat r, 0-based, splits with seed cv.seed + r)."""
    return [fold_ids(y, cv["folds"], (cv["seed"] + r) % 2**32) for r in range(repeats)]


def held_out(y: np.ndarray, cv: dict, k: int) -> np.ndarray:
    """Fold model k's (1-based: repeat (k-1) // folds, its fold (k-1) % folds) held-out rows, as a mask."""
    if k < 1:
        raise PipelineError(f"fold model {k}: they are numbered from 1")
    repeat, fold = divmod(k - 1, cv["folds"])
    return assignments(y, cv, repeat + 1)[repeat] == fold


def fold_dir(model: str, k: int) -> Path:
    """Fold k (1-based, as in the Make targets)."""
    return config.cv_dir(model) / f"fold-{k}"


def train_fold(p: dict, model: str, k: int, x, y, held_mask: np.ndarray, verbose=2) -> dict:
    """Train fold model k (1-based) on the rows outside its held-out mask; save it with the rows it used."""
    from pipeline import budget
    from pipeline.modeling import backend
    from pipeline.speed import tune

    out = fold_dir(model, k)
    train, held = np.flatnonzero(~held_mask), np.flatnonzero(held_mask)
    members = [member_params(p, i) for i in range(1, p["members"] + 1)] if model == "ensemble" else [p]
    start, cpu = time.perf_counter(), os.times()
    histories, saved, ran = [], [], {}
    for i, mp in enumerate(members, start=1):
        mp = tune.resolve(mp)  # "auto": the backend and precision measured fastest here
        refused = budget.deadline_refuses(budget.fold_estimate(mp, len(train)))
        if refused:
            raise PipelineError(f"{model} fold {k}: {refused}")
        backend.init(mp["seed"], backend.choose(mp))  # before Keras is imported: it fixes the backend
        ran = {"backend": backend.choose(mp), "precision": mp["precision"]}
        import keras

        where = out / f"member-{i}" if model == "ensemble" else out
        trained, history, _ = fit(
            x[train],
            y[train],
            mp,
            work_dir_for(where, mp, train),
            x[held],
            y[held],
            log_dir=config.LOGS_DIR / model / "cv" / where.relative_to(config.cv_dir(model)),
            verbose=verbose,
            label=f"fold {k}{f' member {i}' if len(members) > 1 else ''}: ",
        )
        with atomic_path(where / "model.keras", suffix=".keras") as tmp:
            trained.save(tmp)
        histories.append(history)
        saved.append(where / "model.keras")
        keras.backend.clear_session()
    # The rows as trained on, from the arrays themselves: tests check these, not the code's intent.
    save_npz(out / "rows.npz", train=train, held_out=held)
    metrics = {
        "model": model,
        "fold": k,
        "train_rows": int(len(train)),
        "held_out_rows": int(len(held)),
        "models": [str(path.relative_to(out)) for path in saved],
        "history": mean_history(histories),
        "train_seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(sum(os.times()[:2]) - sum(cpu[:2]), 1),
        **ran,  # what "auto" chose
        "run": provenance.run(),
        "params_hash": params_mod.short_hash(p),
        "data_sha256": provenance.data_sha256(),
        "outputs": outputs(out, [str(path.relative_to(out)) for path in saved] + ["rows.npz"]),
    }
    for where in {path.parent for path in saved}:
        for work in where.glob(".work-*"):
            shutil.rmtree(work, ignore_errors=True)
    write_json(out / "metrics.json", metrics)  # last: Make's target
    return metrics


def fold_proba(model: str, k: int, x_held, x_test, tta: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Fold model k's probabilities for its held-out rows and the test set (members averaged)."""
    import keras

    from pipeline.modeling.predict import load_model, predict_proba

    out = fold_dir(model, k)
    held, test, parameters = [], [], 0
    for name in read_json(out / "metrics.json")["models"]:
        m = load_model(out / name)
        held.append(predict_proba(m, x_held, tta))
        test.append(predict_proba(m, x_test, tta))
        parameters += int(m.count_params())
        keras.backend.clear_session()
    return np.mean(held, axis=0), np.mean(test, axis=0), parameters


def check_rows(model: str, k: int, held_mask: np.ndarray) -> None:
    """The fold's saved rows must be exactly what the fold assignment says, and disjoint."""
    rows = load_npz(fold_dir(model, k) / "rows.npz")
    if (
        np.intersect1d(rows["train"], rows["held_out"]).size
        or not np.array_equal(rows["held_out"], np.flatnonzero(held_mask))
        or not np.array_equal(rows["train"], np.flatnonzero(~held_mask))
    ):
        raise PipelineError(
            f"{fold_dir(model, k)} was trained on other rows than fold {k} of these folds: "
            f"delete {config.cv_dir(model)} and rerun `make cv MODEL={model}`"
        )


def assemble(model: str, folds: int, finished_only: bool = False, repeats: int = 1) -> dict:
    """OOF and test predictions of fold models 1..folds x repeats. With `finished_only` (a run stopped by its budget or
    by Ctrl-C), of the folds that finished: the OOF figure then covers their held-out rows only, the
    test prediction is their mean, and the metrics say which folds they were."""
    from pipeline.modeling import backend

    p = read_json(config.cv_dir(model) / "params.json")
    tta = read_json(config.model_dir(model) / "predict.json")["tta"]
    backend.init(preferred=backend.choose(p["member"] if model == "ensemble" else p))
    import keras  # after backend.init: the backend is fixed at Keras's import

    data, x_test = load_npz(config.PROCESSED_DIR / "train.npz"), load_npz(config.PROCESSED_DIR / "test.npz")["x"]
    x, y = data["x"], data["y"].astype(np.int64)
    assigned = assignments(y, p["cv"], repeats)
    oof = np.zeros((repeats, len(y), config.N_CLASSES), np.float32)  # each repeat's out-of-fold predictions
    test = np.zeros((len(x_test), config.N_CLASSES), np.float64)
    fold_metrics, fold_accuracy = [], []
    every = range(1, folds * repeats + 1)
    done = [k for k in every if not finished_only or (fold_dir(model, k) / "metrics.json").exists()]
    if not [k for k in done if k <= folds]:
        raise PipelineError(f"{model}: no fold has finished: nothing to assemble (`make cv MODEL={model}`)")
    for k in done:
        repeat = (k - 1) // folds
        held = assigned[repeat] == (k - 1) % folds
        check_rows(model, k, held)
        oof[repeat, held], test_k, parameters = fold_proba(model, k, x[held], x_test, tta)
        test += test_k / len(done)
        fold_metrics.append(read_json(fold_dir(model, k) / "metrics.json"))
        fold_accuracy.append(float((oof[repeat, held].argmax(axis=1) == y[held]).mean()))
    scored = np.isin(assigned[0], np.array([k for k in done if k <= folds]) - 1)  # all rows unless folds are missing
    correct = (oof[0].argmax(axis=1) == y)[scored]
    save_npz(
        config.cv_dir(model) / "oof.npz",
        index=np.arange(len(y)),
        y_true=y,
        proba=oof[0],
        fold=assigned[0],
        test_proba=test.astype(np.float32),
        **({"proba_repeats": oof} if repeats > 1 else {}),
    )
    ensemble = ensemble_scores(oof, y, assigned, done, folds) if repeats > 1 else {}
    epoch_seconds = [h["epoch_seconds"] for m in fold_metrics for h in m["history"][1:]]
    metrics = {
        "model": model,
        "cv": p["cv"] | {"repeats": repeats},
        "tta": tta,
        "oof_accuracy": float(correct.mean()),
        "oof_ci95": list(stats.accuracy_ci(correct)),
        "oof_log_loss": stats.log_loss(y[scored], oof[0][scored]),
        **ensemble,
        "fold_accuracy": fold_accuracy,
        "folds_trained": done,
        "n_rows": int(scored.sum()),
        "parameters": parameters,
        "seconds_per_epoch": round(float(np.median(epoch_seconds)), 2) if epoch_seconds else None,
        "train_seconds": round(sum(m["train_seconds"] for m in fold_metrics), 1),
        "cpu_seconds": round(sum(m.get("cpu_seconds", 0) for m in fold_metrics), 1),
        "history": mean_history([m["history"] for m in fold_metrics]),
        "params": p,
        "params_hash": params_mod.short_hash(p),
        "data_sha256": provenance.data_sha256(),
        "folds_sha256": params_mod.short_hash(assigned[0].tolist()),
        "outputs": outputs(config.cv_dir(model), ["oof.npz"]),
        "backend": keras.backend.backend(),
        "precision": "+".join(sorted({m.get("precision", "float32") for m in fold_metrics})),
        "provenance": provenance.collect(),
    }
    write_json(config.cv_dir(model) / "metrics.json", metrics)  # last: Make's target
    return metrics


def ensemble_scores(oof: np.ndarray, y: np.ndarray, assigned: list[np.ndarray], done: list[int], folds: int) -> dict:
    """Repeated k-fold: each row scored by the mean of its R out-of-fold predictions, over the rows every
    repeat has scored (all of them, unless the run stopped short), with repeat 1's single models on the
    same rows beside it (a paired comparison)."""
    covered = np.ones(len(y), bool)
    for r, ids in enumerate(assigned):
        covered &= np.isin(ids, [k - 1 - r * folds for k in done if (k - 1) // folds == r])
    if not covered.any():
        return {}
    mean = oof[:, covered].mean(axis=0)
    correct_mean = mean.argmax(axis=1) == y[covered]
    return {
        "oof_ensemble_accuracy": float(correct_mean.mean()),
        "oof_ensemble_ci95": list(stats.accuracy_ci(correct_mean)),
        "oof_ensemble_log_loss": stats.log_loss(y[covered], mean),
        "oof_ensemble_rows": int(covered.sum()),
        "oof_ensemble_single_accuracy": float((oof[0, covered].argmax(axis=1) == y[covered]).mean()),
    }


def summary_line(m: dict) -> str:
    lo, hi = m["oof_ci95"]
    folds = " ".join(f"{a:.2%}" for a in m["fold_accuracy"])
    line = (
        f"{m['model']}: OOF accuracy {m['oof_accuracy']:.2%} (95% CI {lo:.2%}-{hi:.2%}) over {m['n_rows']:,} rows, "
        f"{contents(m)}: {folds}{' (TTA)' if m['tta'] else ''}"
    )
    if "oof_ensemble_accuracy" in m:
        lo, hi = m["oof_ensemble_ci95"]
        rows = m.get("oof_ensemble_rows", m["n_rows"])
        line += (
            f"; each row's {m['cv']['repeats']} out-of-fold models averaged: {m['oof_ensemble_accuracy']:.2%} "
            f"(95% CI {lo:.2%}-{hi:.2%})"
            + (
                f" over the {rows:,} rows every repeat scored (one model: {m['oof_ensemble_single_accuracy']:.2%})"
                if rows != m["n_rows"]
                else ""
            )
        )
    return line


def contents(m: dict) -> str:
    """'5 folds' ('5 folds x 2 repeats'), or what a run stopped short holds: 'folds 1, 2 of 5 (stopped short)'."""
    folds, repeats = m["cv"]["folds"], m["cv"].get("repeats", 1)
    done = m.get("folds_trained") or list(range(1, folds * repeats + 1))
    if len(done) == folds * repeats:
        return f"{folds} folds" + (f" x {repeats} repeats" if repeats > 1 else "")
    return f"folds {', '.join(map(str, done))} of {folds * repeats} (stopped short)"


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    fold = sub.add_parser("fold", help="train fold model k")
    fold.add_argument("--model", required=True)
    fold.add_argument("--fold", type=int, required=True, help="1..cv.folds x cv.repeats (repeat r's: r x folds + 1..)")
    together = sub.add_parser("assemble", help="OOF and test predictions of fold models 1..folds x repeats")
    together.add_argument("--model", required=True)
    together.add_argument("--folds", type=int, required=True)
    together.add_argument("--repeats", type=int, default=1, help="cv.repeats (not in the folds' params.json)")
    together.add_argument("--finished", action="store_true", help="only the folds that finished (a run stopped short)")
    args = ap.parse_args(argv)
    if args.command == "fold":
        p = read_json(config.cv_dir(args.model) / "params.json")
        if not 1 <= args.fold <= p["cv"]["folds"] * MAX_REPEATS:
            raise PipelineError(f"--fold {args.fold}: 1..cv.folds x cv.repeats, at most {MAX_REPEATS} repeats")
        data = load_npz(config.PROCESSED_DIR / "train.npz")
        held = held_out(data["y"], p["cv"], args.fold)
        m = train_fold(p, args.model, args.fold, data["x"], data["y"], held)
        repeat, fold = divmod(args.fold - 1, p["cv"]["folds"])
        print(
            f"{args.model} fold {fold + 1}/{p['cv']['folds']}{f' of repeat {repeat + 1}' if repeat else ''}: "
            f"trained on {m['train_rows']:,} rows in "
            f"{m['train_seconds']} s; held out {m['held_out_rows']:,}"
        )
    else:
        print(summary_line(assemble(args.model, args.folds, finished_only=args.finished, repeats=args.repeats)))


if __name__ == "__main__":
    main()
