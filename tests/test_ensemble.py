"""Ensembles as Make targets, and full-data training, on the committed sample."""

import json

import numpy as np
import pytest

from pipeline.kaggle.submit import upload_message
from tests.helpers import make, run, venv_dir

pytestmark = pytest.mark.slow

FAST = ["PARAMS=ensemble.model=mlp train.mlp.epochs=1 train.conv_gru.epochs=1 train.lstm.epochs=1"]


@pytest.fixture(scope="module")
def project(shared, tmp_path_factory):
    """A copy of the project with its features made (after `make submit EPOCHS=1`, once per run: conftest.py)."""
    return shared.copy("submitted", tmp_path_factory.mktemp("ensemble") / "project")[0]


def test_ensemble_averages_its_members_and_never_retrains_a_finished_one(project):
    make(project, "submission", "MODEL=ensemble", "MEMBERS=1", *FAST)
    assert (project / "submissions/submission-ensemble.csv").exists()
    out = make(project, "train", "MODEL=ensemble", "MEMBERS=2", *FAST)
    assert "member --index 2" in out and "member --index 1" not in out  # the finished one is kept

    models = project / "models/ensemble"
    metrics = json.loads((models / "metrics.json").read_text())
    assert metrics["members"] == 2 and len(metrics["member_val_accuracy"]) == 2
    members = [np.load(models / f"member-{i}/val_predictions.npz") for i in (1, 2)]
    np.testing.assert_array_equal(members[0]["index"], members[1]["index"])  # one shared held-out split
    seeds = [json.loads((models / f"member-{i}/metrics.json").read_text())["params"]["seed"] for i in (1, 2)]
    assert seeds[0] != seeds[1]
    averaged = (members[0]["proba"] + members[1]["proba"]) / 2
    expected_acc = float((averaged.argmax(1) == members[0]["y_true"]).mean())
    assert metrics["val_accuracy"] == pytest.approx(expected_acc, abs=1e-6)


def test_full_data_members_train_on_every_labelled_row(project):
    make(project, "submission", "MODEL=ensemble", "MEMBERS=1", *FAST, "FULL_DATA=1")
    metrics = json.loads((project / "models/ensemble/metrics.json").read_text())
    member = json.loads((project / "models/ensemble/member-1/metrics.json").read_text())
    assert "val_accuracy" not in metrics and member["train_rows"] == 5000
    assert not (project / "models/ensemble/val_predictions.npz").exists()
    # The split run it replaced had 2 members, not 1: nothing to quote for these settings.
    assert "split_val_accuracy" not in metrics
    prov = json.loads((project / "submissions/submission-ensemble.json").read_text())
    assert prov["val_accuracy"] is None and prov["split_val_accuracy"] is None
    assert "no validation split" in upload_message(prov)


def test_a_full_data_model_quotes_only_its_own_settings_split_result(project):
    models = project / "models/mlp"
    make(project, "train", "MODEL=mlp", *FAST)
    split_run = json.loads((models / "metrics.json").read_text())
    assert split_run["train_rows"] == 4500 and (models / "val_predictions.npz").exists()

    out = make(project, "submission", "MODEL=mlp", *FAST, "FULL_DATA=1")
    full = json.loads((models / "metrics.json").read_text())
    assert full["train_rows"] == 5000 and "val_accuracy" not in full
    assert full["split_val_accuracy"] == split_run["val_accuracy"]
    assert f"{split_run['val_accuracy']:.2%} on the validation split" in out
    # Its predictions are gone with the model they described: a report refuses rather than mislead.
    assert not (models / "val_predictions.npz").exists()
    proc = run(["make", f"VENV={venv_dir()}", "report", "MODEL=mlp", *FAST, "FULL_DATA=1"], cwd=project)
    assert proc.returncode != 0 and "full-data model has no validation split" in proc.stderr
    prov = json.loads((project / "submissions/submission-mlp.json").read_text())
    assert prov["split_val_accuracy"] == split_run["val_accuracy"]
    assert f"these settings val_acc {split_run['val_accuracy']:.4%}" in upload_message(prov)

    # Other settings (2 epochs) were never measured on the split: nothing is quoted.
    make(project, "train", "MODEL=mlp", "PARAMS=train.mlp.epochs=2", "FULL_DATA=1")
    assert "split_val_accuracy" not in json.loads((models / "metrics.json").read_text())
