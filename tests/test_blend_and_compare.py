"""The blend of CV runs and the comparison table, on synthetic CV runs (oof.npz + metrics.json) in tmp_path."""

import json
import re

import numpy as np
import pytest
from helpers import REPO, error_line, record, run_module
from scipy.stats import binomtest

from pipeline.evaluate import compare
from pipeline.files import save_npz
from pipeline.modeling import blend

N, FOLDS, N_TEST = 1000, 5, 30
Y = np.arange(N) % 10
FOLD = (np.arange(N) // 10) % FOLDS  # every fold holds every digit equally often


def member_proba(y: np.ndarray, p_top: np.ndarray, wrong: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Rows whose top label gets p_top[i]: the true label, or (y + 1) % 10 for the rows in `wrong`;
    the rest of each row spread at random over the other nine labels."""
    rng = np.random.default_rng(seed)
    n = len(y)
    p_top = np.broadcast_to(np.asarray(p_top, dtype=float), (n,))
    top = np.where(np.isin(np.arange(n), [] if wrong is None else wrong), (y + 1) % 10, y)
    proba = rng.random((n, 10)) + 0.5
    proba[np.arange(n), top] = 0
    proba *= ((1 - p_top) / proba.sum(axis=1))[:, None]
    proba[np.arange(n), top] = p_top
    return proba.astype(np.float32)


def write_cv_run(out, model: str, proba: np.ndarray, test_proba: np.ndarray | None = None, **overrides) -> dict:
    """models/<model>/cv/{oof.npz,metrics.json} under the output root `out`, in the lead's format."""
    cv_dir = out / "models" / model / "cv"
    test_proba = member_proba(np.zeros(N_TEST, int), 0.9, seed=7) if test_proba is None else test_proba
    fold = overrides.pop("fold", FOLD)
    save_npz(cv_dir / "oof.npz", index=np.arange(N), y_true=Y, proba=proba, fold=fold, test_proba=test_proba)
    correct = proba.argmax(1) == Y
    metrics = {
        "model": model,
        "cv": {"folds": FOLDS, "seed": 42},
        "oof_accuracy": float(correct.mean()),
        "oof_ci95": [0.0, 1.0],
        "oof_log_loss": 0.1,
        "fold_accuracy": [float(correct[FOLD == f].mean()) for f in range(FOLDS)],
        "n_rows": N,
        "parameters": 1000 + len(model),
        "seconds_per_epoch": 1.5,
        "train_seconds": 30.0,
        "params": {"model": model},
        "params_hash": f"hash-{model}",
        "data_sha256": "d" * 64,
        "folds_sha256": "f" * 64,
        "backend": "jax",
        "history": [],
    } | overrides
    (cv_dir / "metrics.json").write_text(json.dumps(metrics))
    return json.loads(record(cv_dir / "metrics.json", "oof.npz").read_text())


def env_for(out, tmp_path) -> dict:
    return {"PYTHONPATH": str(REPO), "PIPELINE_OUT": str(out), "MPLCONFIGDIR": str(tmp_path / "mpl")}


# ---------------------------------------------------------------- the blend


@pytest.fixture
def adversarial(tmp_path):
    """Three CV runs whose best weights depend on fold 0: on folds 1-4 `cnn` is the sharp one, on
    fold 0 it is confidently wrong and `lstm` is sharp. Weights fitted with fold 0 lean to `lstm`,
    weights fitted without it to `cnn`; `conv_gru` is noise."""
    out = tmp_path / "out"
    f0 = np.flatnonzero(FOLD == 0)
    rng = np.random.default_rng(5)
    cnn = member_proba(Y, np.where(FOLD == 0, 0.98, 0.92), wrong=f0, seed=1)
    lstm = member_proba(Y, np.where(FOLD == 0, 0.9, 0.45), seed=2)
    noise = member_proba(Y, rng.uniform(0.05, 0.3, N), seed=3)
    tests = {
        m: member_proba(np.arange(N_TEST) % 10, 0.5 + 0.1 * i, seed=10 + i)
        for i, m in enumerate(("cnn", "lstm", "conv_gru"))
    }
    for name, proba in (("cnn", cnn), ("lstm", lstm), ("conv_gru", noise)):
        write_cv_run(out, name, proba, tests[name])
    return dict(out=out, env=env_for(out, tmp_path), proba={"cnn": cnn, "lstm": lstm, "conv_gru": noise}, tests=tests)


def test_fit_weights_finds_the_obvious_blend():
    perfect = member_proba(Y, 0.99, seed=1)
    useless = member_proba(Y, 0.9, wrong=np.arange(N), seed=2)
    w = blend.fit_weights(np.stack([useless, perfect]), Y)
    assert w.sum() == pytest.approx(1) and (w >= 0).all() and w[1] > 0.99
    # Two independent, similar models: the fitted mix is the grid's best, and beats either alone.
    rng = np.random.default_rng(0)
    a, b = (member_proba(Y, rng.uniform(0.2, 0.95, N), seed=s) for s in (3, 4))
    w = blend.fit_weights(np.stack([a, b]), Y)
    grid = np.linspace(0, 1, 201)
    best = grid[np.argmin([blend.log_loss(Y, blend.mix(np.stack([a, b]), [g, 1 - g])) for g in grid])]
    assert 0.1 < w[0] < 0.9 and w[0] == pytest.approx(best, abs=0.01)
    mixed = blend.mix(np.stack([a, b]), w)
    assert blend.log_loss(Y, mixed) < min(blend.log_loss(Y, a), blend.log_loss(Y, b)) - 0.01


def test_the_blend_is_nested_and_its_saved_figures_are_its_own(adversarial, tmp_path):
    proc = run_module(
        "pipeline.modeling.blend",
        "--models",
        "cnn",
        "lstm",
        "conv_gru",
        cwd=tmp_path,
        env=adversarial["env"],
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    cv_dir = adversarial["out"] / "models/blend/cv"
    metrics = json.loads((cv_dir / "metrics.json").read_text())
    oof = dict(np.load(cv_dir / "oof.npz"))
    names = metrics["models"]
    assert names == ["cnn", "lstm", "conv_gru"] and metrics["model"] == "blend"
    members = np.stack([adversarial["proba"][m] for m in names])

    # Fold f's weights are exactly those fitted on the other folds' rows, from the members' saved OOF predictions.
    fold_weights = np.array(metrics["fold_weights"])
    assert fold_weights.shape == (FOLDS, 3)
    np.testing.assert_allclose(fold_weights.sum(1), 1, atol=1e-9)
    for f in range(FOLDS):
        np.testing.assert_allclose(fold_weights[f], blend.fit_weights(members[:, FOLD != f], Y[FOLD != f]), atol=1e-6)
        np.testing.assert_allclose(
            oof["proba"][FOLD == f], blend.mix(members[:, FOLD == f], fold_weights[f]), atol=1e-6
        )
    final = np.array([metrics["weights"][m] for m in names])
    np.testing.assert_allclose(final, blend.fit_weights(members, Y), atol=1e-6)
    # Fold 0 is adversarial: with it in the fit, the weights swing from cnn to lstm.
    assert fold_weights[0][0] > 0.6 and final[0] < fold_weights[0][0] - 0.2
    assert all(abs(fold_weights[f][0] - final[0]) < abs(fold_weights[0][0] - final[0]) for f in range(1, FOLDS))

    # What is recorded and printed is what the saved oof.npz scores.
    correct = oof["proba"].argmax(1) == oof["y_true"]
    assert metrics["oof_accuracy"] == float(correct.mean())
    assert metrics["fold_accuracy"] == [float(correct[FOLD == f].mean()) for f in range(FOLDS)]
    lo, hi = metrics["oof_ci95"]
    assert lo < metrics["oof_accuracy"] < hi
    assert metrics["oof_log_loss"] == pytest.approx(blend.log_loss(oof["y_true"], oof["proba"]))
    line = proc.stdout.strip()
    assert len(line.splitlines()) == 1
    assert f"OOF accuracy {correct.mean():.2%}" in line and f"95% CI {lo:.2%}-{hi:.2%}) over {N:,} rows" in line
    for m in names:
        acc = float((adversarial["proba"][m].argmax(1) == Y).mean())
        assert metrics["member_oof_accuracy"][m] == acc and f"{m} {acc:.2%}" in line
        assert metrics["member_oof_ci95"][m] == list(blend.accuracy_ci(adversarial["proba"][m].argmax(1) == Y))
        assert f"{m} {metrics['weights'][m]:.3f}" in line

    # The same format as any CV run: compare, report and predict read it unchanged.
    np.testing.assert_array_equal(oof["index"], np.arange(N))
    np.testing.assert_array_equal(oof["fold"], FOLD)
    assert oof["proba"].dtype == np.float32 and oof["proba"].shape == (N, 10)
    test_mix = blend.mix(np.stack([adversarial["tests"][m] for m in names]), final)
    np.testing.assert_allclose(oof["test_proba"], test_mix, atol=1e-6)
    for key in ("folds_sha256", "data_sha256"):
        assert metrics[key] == ("f" if key == "folds_sha256" else "d") * 64
    from pipeline.files import sha256_file

    assert metrics["outputs"]["oof.npz"] == sha256_file(cv_dir / "oof.npz")
    assert metrics["n_rows"] == N and metrics["cv"] == {"folds": FOLDS, "seed": 42}
    assert metrics["parameters"] == sum(1000 + len(m) for m in names)
    assert metrics["params"]["blend"]["models"] == names and metrics["params_hash"]


@pytest.mark.parametrize("key, word", [("folds_sha256", "folds"), ("data_sha256", "data")])
def test_a_blend_of_runs_on_different_folds_is_refused(adversarial, tmp_path, key, word):
    write_cv_run(adversarial["out"], "lstm", adversarial["proba"]["lstm"], **{key: "0" * 64})
    proc = run_module(
        "pipeline.modeling.blend", "--models", "cnn", "lstm", cwd=tmp_path, env=adversarial["env"], timeout=120
    )
    line = error_line(proc)
    assert f"lstm and cnn were cross-validated on different {word}" in line
    assert not (adversarial["out"] / "models/blend/cv/metrics.json").exists()


def test_a_missing_cv_run_names_the_make_target(adversarial, tmp_path):
    proc = run_module(
        "pipeline.modeling.blend", "--models", "cnn", "mlp", cwd=tmp_path, env=adversarial["env"], timeout=120
    )
    assert "run `make cv MODEL=mlp` first" in error_line(proc)


def test_same_hash_but_other_fold_arrays_are_refused(adversarial):
    runs = {m: blend.load_cv_run(m, adversarial["out"] / f"models/{m}/cv") for m in ("cnn", "lstm")}
    runs["lstm"][1]["fold"] = np.roll(runs["lstm"][1]["fold"], 1)
    with pytest.raises(blend.PipelineError, match="different rows or folds"):
        blend.blend_runs(runs)


# ---------------------------------------------------------------- compare


def wrong_rows(*ranges) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in ranges])


@pytest.fixture
def three_runs(tmp_path):
    """cnn wrong on rows 0-9 (best, 990/1000); lstm: right on 0-2, wrong on 100-111 (b=12, c=3);
    mlp: right on 3-4, wrong on 200-203 (b=4, c=2)."""
    out = tmp_path / "out"
    runs = {
        "cnn": wrong_rows((0, 10)),
        "lstm": wrong_rows((3, 10), (100, 112)),
        "mlp": wrong_rows((0, 3), (5, 10), (200, 204)),
    }
    for i, (name, wrong) in enumerate(runs.items()):
        write_cv_run(out, name, member_proba(Y, 0.8, wrong=wrong, seed=i), seconds_per_epoch=1.0 + i)
    return dict(out=out, env=env_for(out, tmp_path), wrong=runs)


def test_mcnemar_counts_and_p_values_match_a_hand_count(three_runs, tmp_path):
    proc = run_module(
        "pipeline.evaluate.compare", "mlp", "lstm", "cnn", cwd=tmp_path, env=three_runs["env"], timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((three_runs["out"] / "reports/compare.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert [r["model"] for r in result["rows"]] == ["mlp", "lstm", "cnn"]  # the order asked for
    assert result["best"] == "cnn" and rows["cnn"]["vs_best"] is None
    assert result["n_rows"] == N and result["folds"] == FOLDS
    # By hand: 12 rows only cnn gets right, 3 only lstm; p = 2 * P(X >= 12), X ~ Bin(15, 1/2) = 1152 / 32768.
    lstm = rows["lstm"]["vs_best"]
    assert (lstm["only_best_right"], lstm["only_this_right"]) == (12, 3)
    assert lstm["p_value"] == pytest.approx(2 * (455 + 105 + 15 + 1) / 2**15) and lstm["best_better_beyond_noise"]
    # mlp: 4 against 2, p = 2 * P(X >= 4), X ~ Bin(6, 1/2) = 44 / 64: within noise.
    mlp = rows["mlp"]["vs_best"]
    assert (mlp["only_best_right"], mlp["only_this_right"]) == (4, 2)
    assert mlp["p_value"] == pytest.approx(44 / 64) and not mlp["best_better_beyond_noise"]
    assert mlp["p_value"] == pytest.approx(binomtest(4, 6).pvalue)
    for name, wrong in three_runs["wrong"].items():
        acc = 1 - len(wrong) / N
        assert rows[name]["oof_accuracy"] == pytest.approx(acc) and rows[name]["errors"] == len(wrong)
        lo, hi = rows[name]["oof_ci95"]
        assert lo < acc < hi and hi - lo < 0.05
    assert rows["mlp"]["study_accuracy"] == 0.9368 and rows["cnn"]["study_accuracy"] is None

    md = (three_runs["out"] / "reports/compare.md").read_text()
    lines = {
        line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "---" not in line
    }
    assert "OOF accuracy" in lines["model"] and "McNemar p" in lines["model"] and "study" in lines["model"]
    assert "99.00%" in lines["cnn"] and "best" in lines["cnn"]
    assert "12 / 3" in lines["lstm"] and "cnn better beyond noise" in lines["lstm"] and "0.035" in lines["lstm"]
    assert "4 / 2" in lines["mlp"] and "within noise" in lines["mlp"] and "better beyond noise" not in lines["mlp"]
    assert "93.68%" in lines["mlp"] and "1,003" in lines["mlp"]
    assert f"{N:,} labelled rows" in md and f"{FOLDS}-fold" in md and "p < 0.05" in md
    assert md in proc.stdout


def test_compare_defaults_to_the_study_and_refuses_other_folds(three_runs, tmp_path):
    proc = run_module("pipeline.evaluate.compare", cwd=tmp_path, env=three_runs["env"], timeout=120)
    assert "run `make cv MODEL=conv_gru` first" in error_line(proc)  # mlp lstm conv_gru; no conv_gru run here
    write_cv_run(three_runs["out"], "lstm", member_proba(Y, 0.8, seed=9), folds_sha256="e" * 64)
    proc = run_module("pipeline.evaluate.compare", "cnn", "lstm", cwd=tmp_path, env=three_runs["env"], timeout=120)
    assert "cross-validated on different folds" in error_line(proc)


def test_a_blend_compares_like_any_cv_run(three_runs):
    runs = {m: blend.load_cv_run(m, three_runs["out"] / f"models/{m}/cv") for m in ("cnn", "lstm", "mlp")}
    arrays, metrics = blend.blend_runs(runs)
    result = compare.compare_runs({"blend": (metrics, arrays), **runs})
    row = result["rows"][0]
    assert row["model"] == "blend" and row["oof_accuracy"] == metrics["oof_accuracy"]
    assert re.search(r"\| blend +\|", compare.markdown(result))
