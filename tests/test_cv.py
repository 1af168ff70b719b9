"""k-fold cross-validation through Make, on the committed sample: every claim checked from the
saved artifacts, not from the code's intent."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import csvcheck
from pipeline.kaggle.submit import upload_message
from tests.helpers import make, run

FOLDS = 3
FAST = ["MODEL=mlp", "EPOCHS=2", f"FOLDS={FOLDS}"]  # as conftest.py's shared "cv" project made it


@pytest.fixture(scope="module")
def project(shared, tmp_path_factory):
    """A copy of the project after `make submit EPOCHS=1` then `make submission CV=1 MODEL=mlp EPOCHS=2
    FOLDS=3` (made once per run), and what the latter printed."""
    root, (out,) = shared.copy("cv", tmp_path_factory.mktemp("cv") / "project")
    return root, out


@pytest.mark.slow
def test_folds_partition_the_labelled_rows_once_each_and_are_stratified(project):
    root, _ = project
    oof = np.load(root / "models/mlp/cv/oof.npz")
    y, fold = oof["y_true"], oof["fold"]
    assert len(y) == 5000 and sorted(set(fold.tolist())) == list(range(FOLDS))
    held = [np.load(root / f"models/mlp/cv/fold-{k}/rows.npz")["held_out"] for k in range(1, FOLDS + 1)]
    together = np.sort(np.concatenate(held))
    np.testing.assert_array_equal(together, np.arange(5000))  # each row held out exactly once
    overall = np.bincount(y, minlength=10) / len(y)
    for k in range(FOLDS):
        share = np.bincount(y[fold == k], minlength=10) / (fold == k).sum()
        assert np.abs(share - overall).max() < 0.01  # every fold has the labels' proportions


@pytest.mark.slow
def test_no_fold_model_trained_on_its_held_out_rows(project):
    root, _ = project
    for k in range(1, FOLDS + 1):
        rows = np.load(root / f"models/mlp/cv/fold-{k}/rows.npz")
        assert np.intersect1d(rows["train"], rows["held_out"]).size == 0
        assert len(rows["train"]) + len(rows["held_out"]) == 5000
        metrics = json.loads((root / f"models/mlp/cv/fold-{k}/metrics.json").read_text())
        assert metrics["train_rows"] == len(rows["train"])


@pytest.mark.slow
def test_folds_train_side_by_side_under_the_users_command(project):
    """The fold make runs a JAX model's folds two at a time on two cores, and each fold still records
    the command the user typed, not the fold make's."""
    root, _ = project
    runs = [json.loads((root / f"models/mlp/cv/fold-{k}/metrics.json").read_text())["run"] for k in (1, 2)]
    for r in runs:
        assert "submission" in r["command"] and "cv-folds" not in r["command"], r["command"]
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the folds run one at a time")
    started = max(r["started"] for r in runs)  # ISO 8601 UTC, so strings compare as times
    assert started < min(r["finished"] for r in runs), runs  # the two intervals overlap


@pytest.mark.slow
def test_an_up_to_date_cv_runs_no_stage(project):
    root, _ = project
    out = make(root, "cv", *FAST)
    assert "pipeline.modeling" not in out, out  # neither a fold nor the assembly


@pytest.mark.slow
def test_the_printed_oof_accuracy_is_the_saved_predictions_accuracy(project):
    root, out = project
    oof = np.load(root / "models/mlp/cv/oof.npz")
    recomputed = float((oof["proba"].argmax(1) == oof["y_true"]).mean())
    line = next(ln for ln in out.splitlines() if "OOF accuracy" in ln)
    printed = float(re.search(r"OOF accuracy (\d+\.\d+)%", line)[1]) / 100
    assert printed == pytest.approx(recomputed, abs=5e-5)
    assert re.search(r"95% CI \d+\.\d+%-\d+\.\d+%", line) and line.count("%") >= 3 + FOLDS
    metrics = json.loads((root / "models/mlp/cv/metrics.json").read_text())
    assert metrics["oof_accuracy"] == pytest.approx(recomputed)
    lo, hi = metrics["oof_ci95"]
    assert lo < recomputed < hi
    for k, acc in enumerate(metrics["fold_accuracy"]):
        assert acc == pytest.approx(float((oof["proba"].argmax(1) == oof["y_true"])[oof["fold"] == k].mean()))


@pytest.mark.slow
def test_the_cv_submission_is_the_fold_mean_and_quotes_the_oof_figure(project):
    root, _ = project
    labels = csvcheck.read_submission(root / "submissions/submission-mlp-cv.csv", n_expected=1000)
    oof = np.load(root / "models/mlp/cv/oof.npz")
    np.testing.assert_array_equal(labels, oof["test_proba"].argmax(1))
    prov = json.loads((root / "submissions/submission-mlp-cv.json").read_text())
    assert prov["predicted_by"] == "models/mlp/cv/oof.npz"
    assert f"{FOLDS}-fold OOF {prov['oof_accuracy']:.4%}" in upload_message(prov)
    out = make(root, "submit", "CV=1", *FAST)
    assert "submission-mlp-cv.csv; not uploaded" in out and "pipeline.modeling" not in out  # nothing retrained


@pytest.mark.slow
def test_tta_repredicts_without_retraining(project):
    root, _ = project
    out = make(root, "cv", *FAST, "PARAMS=predict.tta=mlp")
    assert "cv assemble" in out and "cv fold" not in out
    assert json.loads((root / "models/mlp/cv/metrics.json").read_text())["tta"] is True


@pytest.mark.slow
def test_a_killed_fold_resumes_to_the_same_weights(shared, tmp_path):
    """Fold 1 killed after two epochs, then resumed, ends with the weights of an uninterrupted fold 1
    trained by another copy of the project. The MLP with the augmentation on: its dropout and its warps
    both draw from random generators, whose states the checkpoint must carry (and it compiles in seconds)."""
    args = ["MODEL=mlp", "EPOCHS=8", f"FOLDS={FOLDS}", "BATCH_SIZE=64", "PARAMS=train.mlp.augment=true"]
    copies = [shared.copy("submitted", tmp_path / name)[0] for name in ("killed", "other")]  # features made
    for root in copies:
        make(root, "models/mlp/cv/params.json", *args)
    root, other = copies
    cmd = [sys.executable, "-m", "pipeline.modeling.cv", "fold", "--model", "mlp", "--fold", "1"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, state = time.time() + 300, None
    while time.time() < deadline and state is None:
        found = list((root / "models/mlp/cv/fold-1").glob(".work-*/state.json"))
        if found and len(json.loads(found[0].read_text())["history"]) >= 2:
            state = found[0]
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert state is not None and not (root / "models/mlp/cv/fold-1/metrics.json").exists()
    resumed = run(cmd, cwd=root)
    assert resumed.returncode == 0 and "resuming mlp after epoch" in resumed.stdout, resumed.stderr
    assert run(cmd, cwd=other).returncode == 0

    def weights(project_root):
        from pipeline.modeling.predict import load_model

        return load_model(project_root / "models/mlp/cv/fold-1/model.keras").get_weights()

    for a, b in zip(weights(root), weights(other), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_state_is_keyed_on_the_data_too(tmp_path, monkeypatch):
    from pipeline import provenance
    from pipeline.modeling.trainer import work_dir_for

    p = {"model": "mlp", "epochs": 2}
    monkeypatch.setattr(provenance, "data_sha256", lambda: "a" * 64)
    first = work_dir_for(tmp_path, p, np.arange(10))
    monkeypatch.setattr(provenance, "data_sha256", lambda: "b" * 64)
    assert work_dir_for(tmp_path, p, np.arange(10)) != first  # other data: start afresh
    assert work_dir_for(tmp_path, p, np.arange(9)) != work_dir_for(tmp_path, p, np.arange(10))  # other rows too


def test_repeated_kfold_scores_each_row_by_the_mean_of_its_out_of_fold_models(tmp_path, monkeypatch):
    """cv.repeats = 2: two splits, six fold models; each row's two out-of-fold predictions averaged
    make the ensemble figure, repeat 1's alone the single-model one. The fold models are stand-ins whose
    predictions are known per row (right or wrong by a rule per repeat); the assembly is the real one."""
    from pipeline import config, files, provenance
    from pipeline.modeling import cv

    n, folds = 60, 3
    y = np.arange(n) % 10
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 28, 28))  # pixel = row number
    for name, value in (("MODELS_DIR", tmp_path / "models"), ("PROCESSED_DIR", tmp_path / "processed")):
        monkeypatch.setattr(config, name, value)
    monkeypatch.setattr(provenance, "collect", dict)
    monkeypatch.setattr(provenance, "data_sha256", lambda: "0" * 64)
    monkeypatch.setattr(cv, "load_npz", lambda path: dict(np.load(path)))  # no stage made these arrays
    files.save_npz(config.PROCESSED_DIR / "train.npz", x=x, y=y)
    files.save_npz(config.PROCESSED_DIR / "test.npz", x=x[:5])
    p = {"model": "mlp", "backend": "jax", "cv": {"folds": folds, "seed": 42}}  # the folds' params: no repeats
    files.write_json(config.cv_dir("mlp") / "params.json", p)
    files.write_json(config.model_dir("mlp") / "predict.json", {"tta": False})
    assigned = cv.assignments(y, p["cv"], 2)
    assert not np.array_equal(assigned[0], assigned[1])  # another split, not the same one twice
    right = [np.arange(n) % 2 == 0, np.arange(n) % 3 == 0]  # which rows each repeat's models get right
    for k in range(1, folds * 2 + 1):
        held = cv.held_out(y, p["cv"], k)
        assert held.sum() == n // folds
        files.save_npz(cv.fold_dir("mlp", k) / "rows.npz", train=np.flatnonzero(~held), held_out=np.flatnonzero(held))
        files.write_json(
            cv.fold_dir("mlp", k) / "metrics.json",
            {"models": [], "history": [{"epoch": 0, "loss": 1.0, "epoch_seconds": 1.0}], "train_seconds": 1},
        )
    # every row is held out once per repeat
    assert all(sum(cv.held_out(y, p["cv"], k) for k in ks).max() == 1 for ks in ([1, 2, 3], [4, 5, 6]))

    def fold_proba(model, k, x_held, x_test, tta):
        rows = x_held[:, 0, 0].astype(int)
        ok = right[(k - 1) // folds][rows]
        proba = np.full((len(rows), 10), 0.0, np.float32)
        proba[np.arange(len(rows)), y[rows]] = np.where(ok, 0.9, 0.4)  # a wrong model is 0.6 sure of the next label
        proba[np.arange(len(rows)), (y[rows] + 1) % 10] = np.where(ok, 0.1, 0.6)
        return proba, np.full((len(x_test), 10), k, np.float32), 7

    monkeypatch.setattr(cv, "fold_proba", fold_proba)
    m = cv.assemble("mlp", folds, repeats=2)
    assert m["oof_accuracy"] == pytest.approx(right[0].mean())
    assert m["oof_ensemble_accuracy"] == pytest.approx((right[0] | right[1]).mean())  # one right is enough
    assert m["fold_accuracy"] == [
        pytest.approx(right[r][cv.held_out(y, p["cv"], k)].mean())
        for r, k in [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (1, 6)]
    ]
    oof = np.load(config.cv_dir("mlp") / "oof.npz")
    assert oof["proba_repeats"].shape == (2, n, 10) and np.array_equal(oof["fold"], assigned[0])
    assert np.allclose(oof["test_proba"], 3.5)  # the mean of all six fold models
    assert "5 folds" not in cv.summary_line(m) and "3 folds x 2 repeats" in cv.summary_line(m)
    assert "each row's 2 out-of-fold models averaged" in cv.summary_line(m)
    # Stopped short in repeat 2 (folds 5 and 6 unfinished): the average is scored on the rows both repeats
    # scored, repeat 2's fold 1, beside repeat 1's single models on those same rows.
    for k in (5, 6):
        (cv.fold_dir("mlp", k) / "metrics.json").unlink()
    part = cv.assemble("mlp", folds, finished_only=True, repeats=2)
    both = cv.held_out(y, p["cv"], 4)
    assert part["oof_accuracy"] == m["oof_accuracy"] and part["oof_ensemble_rows"] == both.sum()
    assert part["oof_ensemble_accuracy"] == pytest.approx((right[0] | right[1])[both].mean())
    assert part["oof_ensemble_single_accuracy"] == pytest.approx(right[0][both].mean())
    assert "of 6 (stopped short)" in cv.summary_line(part) and f"over the {both.sum()} rows" in cv.summary_line(part)
