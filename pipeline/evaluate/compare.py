"""`make compare`: cross-validated models side by side, with how sure each difference is.

For each model's CV run (models/<m>/cv/oof.npz and metrics.json, all on the same folds of the same
data): out-of-fold (OOF) accuracy over every labelled row with its Wilson 95% interval, OOF log
loss, parameters and seconds per epoch, next to the study's own figures; and McNemar's exact test of
each model against the best one on the same rows. Writes reports/compare.json and reports/compare.md.
"""

import argparse

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.files import write_json, write_text
from pipeline.modeling.blend import check_same_folds, load_cv_run
from pipeline.modeling.models import STUDY_ACCURACY
from pipeline.stats import accuracy_ci, log_loss, mcnemar

ALPHA = 0.05  # below this McNemar p-value, the best model is better beyond noise


def correct_rows(oof: dict) -> np.ndarray:
    return np.asarray(oof["proba"]).argmax(axis=1) == np.asarray(oof["y_true"])


def compare_runs(runs: dict[str, tuple[dict, dict]]) -> dict:
    """Rows of the comparison, the best model's name, and the shared fold settings."""
    if not runs:
        raise PipelineError("nothing to compare: name at least one model")
    check_same_folds(runs)
    correct = {m: correct_rows(oof) for m, (_, oof) in runs.items()}
    accuracy = {m: float(c.mean()) for m, c in correct.items()}
    best = max(runs, key=lambda m: accuracy[m])  # the first listed among equals
    rows = []
    for name, (metrics, oof) in runs.items():
        lo, hi = accuracy_ci(correct[name])
        row = {
            "model": name,
            "parameters": metrics.get("parameters"),
            "oof_accuracy": accuracy[name],
            "oof_ci95": [lo, hi],
            # each row's R out-of-fold models averaged (repeated k-fold, cv.repeats = R > 1); None for one repeat
            "oof_ensemble_accuracy": metrics.get("oof_ensemble_accuracy"),
            "oof_ensemble_ci95": metrics.get("oof_ensemble_ci95"),
            "repeats": (metrics.get("cv") or {}).get("repeats", 1),
            "oof_ensemble_rows": metrics.get("oof_ensemble_rows"),  # fewer than all when the run stopped short
            "study_accuracy": STUDY_ACCURACY.get(name),
            "oof_log_loss": log_loss(oof["y_true"], oof["proba"]),
            "seconds_per_epoch": metrics.get("seconds_per_epoch"),
            "train_seconds": metrics.get("train_seconds"),
            "backend": metrics.get("backend"),
            "errors": int((~correct[name]).sum()),
            "n_rows": int(len(correct[name])),
        }
        if name == best:
            row |= {"vs_best": None}
        else:
            test = mcnemar(correct[best], correct[name])
            row |= {
                "vs_best": {
                    "best": best,
                    "only_best_right": test["only_first"],
                    "only_this_right": test["only_second"],
                    "p_value": test["p_value"],
                    "best_better_beyond_noise": test["p_value"] < ALPHA,
                }
            }
        rows.append(row)
    m0, oof0 = next(iter(runs.values()))
    return {
        "rows": rows,
        "best": best,
        "n_rows": int(len(oof0["y_true"])),
        "cv": m0.get("cv"),
        "folds": int(len(np.unique(oof0["fold"]))),
        "data_sha256": m0.get("data_sha256"),
        "folds_sha256": m0.get("folds_sha256"),
        "alpha": ALPHA,
    }


def _pct(v) -> str:
    return "-" if v is None or v != v else f"{v:.2%}"


def _ensemble(row: dict) -> str:
    """'99.71% (99.62-99.78%, 2 models)': each row's out-of-fold models of a repeated k-fold averaged."""
    if row.get("oof_ensemble_accuracy") is None:
        return "-"
    lo, hi = row["oof_ensemble_ci95"]
    rows = row.get("oof_ensemble_rows")
    where = f", {rows:,} rows" if rows is not None and rows != row.get("n_rows") else ""
    return f"{row['oof_ensemble_accuracy']:.2%} ({lo:.2%}-{hi:.2%}, {row['repeats']} models{where})"


def _verdict(row: dict) -> str:
    t = row["vs_best"]
    if t is None:
        return "best"
    if t["best_better_beyond_noise"]:
        return f"{t['best']} better beyond noise"
    return "within noise"


def markdown(result: dict) -> str:
    rows = result["rows"]
    table = pd.DataFrame(
        {
            "model": [r["model"] for r in rows],
            "parameters": [f"{r['parameters']:,}" if r["parameters"] is not None else "-" for r in rows],
            "OOF accuracy": [_pct(r["oof_accuracy"]) for r in rows],
            "95% CI": [f"{r['oof_ci95'][0]:.2%}-{r['oof_ci95'][1]:.2%}" for r in rows],
            "ensemble OOF": [_ensemble(r) for r in rows],
            "study": [_pct(r["study_accuracy"]) for r in rows],
            "OOF log loss": [f"{r['oof_log_loss']:.4f}" for r in rows],
            "s/epoch": [f"{r['seconds_per_epoch']:.2f}" if r["seconds_per_epoch"] is not None else "-" for r in rows],
            "b / c vs best": [
                f"{r['vs_best']['only_best_right']} / {r['vs_best']['only_this_right']}" if r["vs_best"] else "-"
                for r in rows
            ],
            "McNemar p": [f"{r['vs_best']['p_value']:.2g}" if r["vs_best"] else "-" for r in rows],
            "vs best": [_verdict(r) for r in rows],
        }
    )
    # Cells are preformatted text: no re-parsing as numbers (it would print 3.00 s/epoch as 3).
    align = ("left",) + ("right",) * (len(table.columns) - 2) + ("left",)
    return table.to_markdown(index=False, colalign=align, disable_numparse=True) + "\n"


def note(result: dict) -> str:
    cv = result.get("cv") or {}
    seed = f", seed {cv['seed']}" if "seed" in cv else ""
    return (
        f"Out-of-fold (OOF): each of the {result['n_rows']:,} labelled rows of train.csv is predicted by the fold "
        "model "
        f"that did not train on it ({result['folds']}-fold stratified cross-validation{seed}; the same folds for every "
        f"model, folds_sha256 {str(result['folds_sha256'])[:12]}). 95% CI: Wilson interval of the OOF accuracy. "
        f"McNemar: exact two-sided binomial test on the rows where exactly one of two models is right; "
        f"b = rows only the best model ({result['best']}) gets right, c = rows only this model gets right. "
        f'"better beyond noise" only at p < {result["alpha"]}; otherwise the two differ by no more than chance '
        "does on these rows. Ensemble OOF (repeated k-fold, cv.repeats = R > 1): each row scored by the mean of "
        "its R out-of-fold models, from R different splits: the accuracy of an R-model average, which the "
        "single-model OOF figure understates (a submission averages every fold model). The study's figures "
        "are its own single split's.\n"
    )


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "models",
        nargs="*",
        default=list(STUDY_ACCURACY),
        help="CV runs to compare (default: the study's three); any name with models/<m>/cv/",
    )
    args = ap.parse_args(argv)
    names = list(dict.fromkeys(args.models))
    result = compare_runs({m: load_cv_run(m) for m in names})
    text = markdown(result) + "\n" + note(result)
    write_json(config.REPORTS_DIR / "compare.json", result)
    write_text(config.REPORTS_DIR / "compare.md", text)
    print(text, end="")


if __name__ == "__main__":
    main()
