"""`make blend`: the CV runs of `blend.models`, combined with weights fitted on their OOF predictions.

The blend's probabilities are sum_k w_k * p_k with w_k >= 0 and sum w_k = 1, the weights minimising the
log loss of the out-of-fold (OOF) predictions. Nested, so that the blend's own OOF figure is honest:
the rows of fold f are blended with weights fitted on the OOF rows of the other folds only; the final
weights (applied to the test set) are fitted on every OOF row.

Reads models/<m>/cv/{oof.npz,metrics.json} of each member (all on the same folds of the same data) and
writes models/blend/cv/oof.npz and metrics.json in the same format, so compare, report and predict treat
the blend like any CV run. Pure workers (arrays in, arrays out) do the work; main() reads and writes.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.files import load_npz, outputs, read_json, save_npz, write_json
from pipeline.stats import accuracy_ci, log_loss

NAME = "blend"
EPS = 1e-15  # the mix is clipped here before the log while its weights are fitted
OOF_KEYS = ("index", "y_true", "proba", "fold", "test_proba")


# ---------------------------------------------------------------- workers


def true_class_proba(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(K, N, C) probabilities of K models -> (N, K): each model's (row-normalised) probability of the true label."""
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    picked = proba[:, np.arange(len(y)), y] / proba.sum(axis=2)
    return picked.T


def _softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()


def fit_weights(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 (one per model) minimising the log loss of sum_k w_k p_k.

    proba: (K, N, C). Only each model's probability of the true label matters, so the loss is
    -mean_i log(P_i . w) with P = true_class_proba: convex in w. Softmax-parametrised weights,
    L-BFGS-B from equal weights, analytic gradient; deterministic for the same inputs.
    """
    from scipy.optimize import minimize

    p = true_class_proba(proba, y)
    n, k = p.shape
    if k == 1:
        return np.ones(1)
    if n == 0:
        raise PipelineError("cannot fit blend weights on zero rows")

    def loss_and_grad(theta):
        w = _softmax(theta)
        mix = np.clip(p @ w, EPS, None)
        loss = -np.mean(np.log(mix))
        g_w = -(p / mix[:, None]).mean(axis=0)  # d loss / d w
        return loss, w * (g_w - w @ g_w)  # chain rule through the softmax

    result = minimize(
        loss_and_grad, np.zeros(k), jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-15}
    )
    return _softmax(result.x)


def mix(proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(K, N, C) probabilities and K weights -> the (N, C) weighted mixture."""
    return np.tensordot(np.asarray(weights, dtype=np.float64), np.asarray(proba, dtype=np.float64), axes=1)


def nested_blend(proba: np.ndarray, y: np.ndarray, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(OOF blend (N, C), fold weights (F, K)): the rows of fold f mixed with weights fitted on the
    rows of every other fold, so no row's blended probability used that row to pick the weights."""
    fold = np.asarray(fold)
    folds = np.unique(fold)
    out = np.zeros(np.asarray(proba).shape[1:], dtype=np.float64)
    fold_weights = []
    for f in folds:
        held = fold == f
        w = fit_weights(proba[:, ~held], y[~held])
        out[held] = mix(proba[:, held], w)
        fold_weights.append(w)
    return out, np.array(fold_weights)


def oof_scores(y: np.ndarray, proba: np.ndarray, fold: np.ndarray) -> dict:
    """OOF accuracy with its Wilson 95% interval, log loss and per-fold accuracy of (N, C) probabilities."""
    correct = np.asarray(proba).argmax(axis=1) == np.asarray(y)
    return {
        "oof_accuracy": float(correct.mean()),
        "oof_ci95": list(accuracy_ci(correct)),
        "oof_log_loss": log_loss(y, proba),
        "fold_accuracy": [float(correct[fold == f].mean()) for f in np.unique(fold)],
    }


# ---------------------------------------------------------------- reading CV runs


def missing_run_hint(model: str) -> str:
    return "run `make blend` first" if model == NAME else f"run `make cv MODEL={model}` first"


def load_cv_run(model: str, cv_dir: Path | None = None) -> tuple[dict, dict]:
    """(metrics.json, oof.npz arrays) of one model's CV run, checked for shape; one-line errors."""
    cv_dir = Path(cv_dir) if cv_dir is not None else config.cv_dir(model)
    metrics_path, oof_path = cv_dir / "metrics.json", cv_dir / "oof.npz"
    for path in (metrics_path, oof_path):
        if not path.exists():
            raise PipelineError(f"{path} is missing: no cross-validated {model}; {missing_run_hint(model)}")
    metrics, oof = read_json(metrics_path), load_npz(oof_path)
    lacking = [k for k in OOF_KEYS if k not in oof]
    if lacking:
        raise PipelineError(f"{oof_path} lacks {', '.join(lacking)}: {missing_run_hint(model)} again")
    n = len(oof["y_true"])
    if (
        oof["proba"].shape != (n, config.N_CLASSES)
        or len(oof["index"]) != n
        or len(oof["fold"]) != n
        or oof["test_proba"].ndim != 2
        or oof["test_proba"].shape[1] != config.N_CLASSES
    ):
        raise PipelineError(f"{oof_path} has inconsistent shapes: {missing_run_hint(model)} again")
    return metrics, oof


def check_same_folds(runs: dict[str, tuple[dict, dict]]) -> None:
    """Refuse CV runs that were not made on the same data with the same fold assignment."""
    names = list(runs)
    first, (m0, o0) = names[0], runs[names[0]]
    for name in names[1:]:
        m, o = runs[name]
        for key, what in (("data_sha256", "data"), ("folds_sha256", "folds")):
            if m.get(key) != m0.get(key):
                raise PipelineError(
                    f"{name} and {first} were cross-validated on different {what} ({key} {str(m.get(key))[:12]} vs "
                    f"{str(m0.get(key))[:12]}): rerun `make cv MODEL=<model>` for both with the same data "
                    "and [cv] params"
                )
        if not all(np.array_equal(o[k], o0[k]) for k in ("index", "y_true", "fold")):
            raise PipelineError(
                f"{name} and {first} have OOF predictions for different rows or folds "
                f"(same folds_sha256): rerun `make cv MODEL={name}`"
            )


# ---------------------------------------------------------------- the stage


def blend_runs(runs: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
    """(oof.npz arrays, metrics without file hashes and provenance) of the blend of `runs`."""
    names = list(runs)
    if len(names) < 2:
        raise PipelineError("a blend needs at least two models (blend.models)")
    if len(set(names)) != len(names):
        raise PipelineError(f"blend.models names a model twice: {', '.join(names)}")
    check_same_folds(runs)
    start = time.perf_counter()
    # A run stopped short by its budget holds some folds only: blend on the rows every member scored.
    trained = [set(runs[m][0].get("folds_trained") or np.unique(runs[m][1]["fold"]) + 1) for m in names]
    common = sorted(int(k) for k in set.intersection(*trained))
    if not common:
        raise PipelineError(f"the members of the blend ({', '.join(names)}) have no finished fold in common")
    first = {
        k: v[np.isin(runs[names[0]][1]["fold"], np.array(common) - 1)]
        for k, v in runs[names[0]][1].items()
        if k != "test_proba"
    }
    rows = np.isin(runs[names[0]][1]["fold"], np.array(common) - 1)
    y, fold = first["y_true"].astype(np.int64), first["fold"]
    proba = np.stack([runs[m][1]["proba"][rows] for m in names]).astype(np.float64)
    tests = [runs[m][1]["test_proba"] for m in names]
    if len({t.shape for t in tests}) != 1:
        raise PipelineError(
            "the members' test_proba differ in shape ("
            + ", ".join(f"{m} {t.shape}" for m, t in zip(names, tests))
            + "): rerun their `make cv` on the same data"
        )
    oof_proba, fold_weights = nested_blend(proba, y, fold)
    weights = fit_weights(proba, y)
    test_proba = mix(np.stack(tests), weights)
    oof_proba = oof_proba.astype(np.float32)  # the scores below are those of the saved array
    arrays = {
        "index": first["index"],
        "y_true": first["y_true"],
        "proba": oof_proba,
        "fold": fold,
        "test_proba": test_proba.astype(np.float32),
    }
    members = {m: runs[m][0] for m in names}
    params = {"blend": {"models": names}, "members": {m: members[m].get("params_hash") for m in names}}
    from pipeline.params import short_hash

    def total(key):
        values = [members[m].get(key) for m in names]
        if any(v is None for v in values):
            return None
        return int(sum(values)) if all(isinstance(v, int) for v in values) else round(float(sum(values)), 2)

    member_right = {m: runs[m][1]["proba"][rows].argmax(1) == y for m in names}
    metrics = {
        "model": NAME,
        "models": names,
        "cv": members[names[0]].get("cv"),
        # test-time augmentation of the members' test predictions: their common setting (None if they differ)
        "tta": tta.pop() if len(tta := {members[m].get("tta") for m in names}) == 1 else None,
        **oof_scores(y, oof_proba, fold),
        "n_rows": int(len(y)),
        "folds_trained": common,
        "weights": {m: float(w) for m, w in zip(names, weights)},
        "fold_weights": fold_weights.tolist(),
        # each member alone on the same rows: what the blend adds over its best member
        "member_oof_accuracy": {m: float(member_right[m].mean()) for m in names},
        "member_oof_ci95": {m: list(accuracy_ci(member_right[m])) for m in names},
        "parameters": total("parameters"),
        "seconds_per_epoch": total("seconds_per_epoch"),  # one epoch of every member
        "train_seconds": total("train_seconds"),
        "blend_seconds": round(time.perf_counter() - start, 2),
        "params": params,
        "params_hash": short_hash(params),
        "data_sha256": members[names[0]].get("data_sha256"),
        "folds_sha256": members[names[0]].get("folds_sha256"),
        "backend": "+".join(sorted({str(members[m].get("backend")) for m in names})),
        "history": [],  # a blend trains no network
    }
    return arrays, metrics


def summary_line(metrics: dict) -> str:
    lo, hi = metrics["oof_ci95"]
    weights = ", ".join(f"{m} {w:.3f}" for m, w in metrics["weights"].items())
    members = ", ".join(f"{m} {a:.2%}" for m, a in metrics["member_oof_accuracy"].items())
    return (
        f"blend: OOF accuracy {metrics['oof_accuracy']:.2%} (95% CI {lo:.2%}-{hi:.2%}) "
        f"over {metrics['n_rows']:,} rows, "
        f"log loss {metrics['oof_log_loss']:.4f}; weights {weights}; members' OOF accuracy {members}"
    )


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", help="the CV runs to blend (default: blend.models of params.toml)")
    ap.add_argument("overrides", nargs="*", help="parameter overrides, e.g. blend.models=cnn,lstm")
    args = ap.parse_args(argv)
    if args.models:
        names = args.models
    else:
        from pipeline import params

        names = params.resolve(args.overrides)["blend"]["models"]
    from pipeline import provenance

    runs = {m: load_cv_run(m) for m in names}
    arrays, metrics = blend_runs(runs)
    out_dir = config.cv_dir(NAME)
    save_npz(out_dir / "oof.npz", **arrays)
    metrics["outputs"] = outputs(out_dir, ["oof.npz"])
    metrics["provenance"] = provenance.collect()
    write_json(out_dir / "metrics.json", metrics)  # last: Make's target, written only on success
    print(f"{summary_line(metrics)} -> {out_dir / 'metrics.json'}")


if __name__ == "__main__":
    main()
