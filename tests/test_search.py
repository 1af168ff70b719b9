"""`make search`: an Optuna study of a model's settings on one CV fold, through Make on the committed
sample; each claim checked from what it wrote (its trials' saved predictions), not from the code's intent."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import params as params_mod
from pipeline.errors import PipelineError
from pipeline.modeling.cv import fold_ids
from pipeline.modeling.search import progress_step
from pipeline.stats import mcnemar
from tests.helpers import REPO, make

SPACE = """
[search.mlp]
learning_rate = {low = 0.0005, high = 0.01, log = true}
epochs = {choices = [2, 3]}
"""
FAST = ["MODEL=mlp", "EPOCHS=2", "FOLDS=3"]


@pytest.fixture(scope="module")
def project(shared, tmp_path_factory):
    root, _ = shared.copy("submitted", tmp_path_factory.mktemp("search") / "project")  # its features made
    with open(root / "params.toml", "a", encoding="utf-8") as f:
        f.write(SPACE)
    return root, make(root, "search", "TRIALS=3", *FAST)


def summary(root):
    return json.loads((root / "models/mlp/search/metrics.json").read_text())


@pytest.mark.slow
def test_trial_0_is_the_current_settings_and_every_trial_is_scored_on_the_folds_held_out_rows(project):
    root, out = project
    m = summary(root)
    assert [t["number"] for t in m["trials"]] == [0, 1, 2]
    assert m["trials"][0]["params"] == {"learning_rate": 0.002, "epochs": 2}  # params.toml's, with EPOCHS=2
    y = np.load(root / "data/processed/train.npz")["y"]
    held = np.flatnonzero(fold_ids(y, 3, m["params"]["cv"]["seed"]) == 0)  # fold 1, as `make cv` splits it
    right = {}
    for t in m["trials"]:
        assert t["state"] == "complete" and t["epochs_run"] == t["params"]["epochs"]
        saved = np.load(root / f"models/mlp/search/trials/{m['study']}-{t['number']}.npz")
        np.testing.assert_array_equal(saved["index"], held)
        right[t["number"]] = saved["proba"].argmax(axis=1) == y[held]
        assert right[t["number"]].mean() == pytest.approx(t["accuracy"])
    best = max(m["trials"], key=lambda t: t["accuracy"])
    assert m["best"] == best["number"] and m["baseline"] == 0
    if best["number"] != 0:  # the report's McNemar, recomputed from the saved predictions
        test = mcnemar(right[best["number"]], right[0])
        assert (m["best_only"], m["baseline_only"]) == (test["only_first"], test["only_second"])
        assert f"{m['best_only']} / {m['baseline_only']} rows" in out
    assert m["confirm"].startswith('make cv MODEL=mlp PARAMS="train.mlp.learning_rate=')
    assert (root / "reports/search-mlp.md").read_text() in out


@pytest.mark.slow
def test_more_trials_continue_the_study_without_retraining_a_finished_one(project):
    root, _ = project
    before = summary(root)["trials"]
    out = make(root, "search", "TRIALS=4", *FAST)
    assert "3 of 4 trials finished" in out and "trial 3: training" in out
    assert not any(f"trial {n}: training" in out for n in range(3))
    after = summary(root)["trials"]
    assert len(after) == 4 and after[:3] == before  # the same trials, to the second they took
    assert "pipeline.modeling.search" not in make(root, "search", "TRIALS=4", *FAST)  # up to date: nothing runs


# A study run in a child process (Keras's backend is fixed per process), on 60 random images, 40 to train on;
# its arguments: the study's folder and the trial's epochs.
CHILD = """
import json, os, signal, sys
from pathlib import Path
import numpy as np, optuna
from pipeline.modeling import backend
backend.init(0, "jax")
from pipeline.modeling import search
search.provenance.data_sha256 = lambda: "0" * 64
rng = np.random.default_rng(0)
x, y = rng.random((60, 28, 28), dtype=np.float32), np.arange(60) % 10
train = {"model": "mlp", "seed": 0, "distribute": "off", "epochs": int(sys.argv[2]), "batch_size": 16,
         "learning_rate": 0.002, "augment": False, "elastic": 0.0, "backend": "jax", "backend_gpu": "jax",
         "precision": "float32"}
sp = {"model": "mlp", "train": train, "cv": {"folds": 3, "seed": 42}, "fold": 1, "trials": 1,
      "space": {"learning_rate": {"low": 0.001, "high": 0.01, "log": True}}}
out = Path(sys.argv[1])
"""
PRUNED = (
    CHILD
    + """
study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
study.optimize(search.objective(sp, x, y, np.arange(40), np.arange(40, 60), out, verbose=0), n_trials=1)
t = study.trials[0]
print(json.dumps({"state": t.state.name, "steps": t.intermediate_values, "epochs_run": t.user_attrs["epochs_run"],
                  "left": sorted(str(p) for p in out.rglob("*") if p.is_file())}))
"""
)


@pytest.mark.slow
def test_a_pruned_trial_stops_at_its_first_report_and_leaves_nothing_behind(tmp_path):
    # A pruner that prunes at any accuracy: the trial must stop at the first tenth of its schedule it reports
    # (epoch 1 of 4 completes 20%), having reported that epoch's held-out accuracy.
    proc = subprocess.run(
        [sys.executable, "-c", PRUNED, str(tmp_path / "search"), "4"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["state"] == "PRUNED" and result["epochs_run"] == 1
    assert list(result["steps"]) == ["20"] and 0 <= result["steps"]["20"] <= 1
    assert result["left"] == []  # no checkpoint of a trial that will never resume


KILLED = (
    CHILD
    + """
search.HEARTBEAT_S, search.GRACE_S = 1, 2  # a killed trial is declared dead after 2 s, not 3 min
if os.environ.get("KILL_AFTER_EPOCH"):  # SIGKILL right after that epoch's checkpoint, as a kill there would
    step = search.progress_step
    def progress_step(epoch, epochs):
        if epoch + 1 == int(os.environ["KILL_AFTER_EPOCH"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return step(epoch, epochs)
    search.progress_step = progress_step
m = search.search(sp, x, y, out, verbose=2)
print(json.dumps({"trials": m["trials"], "study": m["study"]}))
"""
)


@pytest.mark.slow
def test_a_killed_trial_is_retried_from_its_last_epoch_to_the_same_result(tmp_path):
    def child(out, **env):
        return subprocess.run(
            [sys.executable, "-c", KILLED, str(out), "6"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PIPELINE_OUT": str(tmp_path / "root"), **env},
        )

    killed = child(tmp_path / "a", KILL_AFTER_EPOCH="3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    time.sleep(3)  # past the grace period: the trial's heartbeat has stopped
    resumed = child(tmp_path / "a")
    assert resumed.returncode == 0, resumed.stderr
    assert "trial 1: resuming mlp after epoch 3 of 6" in resumed.stdout
    trials = json.loads(resumed.stdout.strip().splitlines()[-1])["trials"]
    assert [(t["number"], t["state"]) for t in trials] == [(0, "fail"), (1, "complete")]
    assert trials[1]["params"] == trials[0]["params"] == {"learning_rate": 0.002}  # trial 0 again: the current settings
    whole = child(tmp_path / "b")  # the same study, never killed
    assert whole.returncode == 0, whole.stderr
    study = json.loads(whole.stdout.strip().splitlines()[-1])["study"]
    proba = [np.load(tmp_path / d / "trials" / f"{study}-{n}.npz")["proba"] for d, n in (("a", 1), ("b", 0))]
    np.testing.assert_allclose(proba[0], proba[1], atol=1e-6)  # the resumed trial ends where an unbroken one does


def test_each_tenth_of_a_schedule_is_reported_once():
    for epochs in (1, 3, 4, 10, 40, 45):
        steps = [progress_step(e, epochs) for e in range(epochs)]
        reported = [s for s in steps if s is not None]
        assert reported == sorted(set(reported)) and reported[-1] == 100
        assert len(reported) == min(epochs, 10)


def test_a_space_must_hold_the_current_settings_and_name_valid_values():
    params = params_mod.load()
    params["search"]["mlp"] = {"epochs": {"choices": [2, 3]}}
    with pytest.raises(PipelineError, match=r"search\.mlp\.epochs: the current train\.mlp\.epochs = 30 is outside"):
        params_mod.for_search(params_mod.check(params), "mlp")
    for space, message in (
        ({"epochs": {"low": 10}}, r"search\.mlp\.epochs: expected \{low"),
        ({"epochs": {"low": 40, "high": 20}}, r"low \(40\) must be below high"),
        ({"epochs": {"choices": [0, 30]}}, r"search\.mlp\.epochs = 0 is out of range"),
        ({"augment": {"low": 0, "high": 1}}, r"not a number"),
        ({"width": {"choices": [8]}}, r"unknown parameter 'search\.mlp\.width'"),
        ({"backend": {"choices": ["jax", "tensorflow"]}}, r"one Keras backend"),
    ):
        params["search"]["mlp"] = space
        with pytest.raises(PipelineError, match=message):
            params_mod.check(params)
