"""The Make targets as a new user runs them, on the committed sample, in a throwaway copy."""

import json
import signal
import subprocess
import sys
import time

import pytest

from pipeline import csvcheck
from tests.helpers import copy_project, make, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("e2e"))


def test_make_submit_on_the_sample_writes_a_valid_submission_and_says_why_it_did_not_upload(project):
    out = make(project, "submit", "EPOCHS=1")
    assert "DEMO sample" in out
    assert "not uploaded: its test set is the committed demo sample" in out
    labels = csvcheck.read_submission(project / "submissions/submission.csv", n_expected=1000)
    assert labels.min() >= 0 and labels.max() <= 9
    metrics = json.loads((project / "models/conv_gru/metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["parameters"] == 28_506
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["params"]["epochs"] == 1
    prov = json.loads((project / "submissions/submission.json").read_text())
    assert prov["model"] == "conv_gru" and prov["data"]["origin"] == "sample"


def test_second_make_submit_does_no_work(project):
    out = make(project, "submit", "EPOCHS=1")
    for stage in ("pipeline.dataset", "pipeline.features", "pipeline.modeling.train", "pipeline.modeling.predict"):
        assert stage not in out


def test_changed_parameter_retrains_only_what_depends_on_it(project):
    out = make(project, "submission", "EPOCHS=1", "SEED=3")
    assert "pipeline.modeling.train" in out and "pipeline.modeling.predict" in out
    assert "pipeline.dataset" not in out and "pipeline.features" not in out


def test_same_data_params_and_seed_give_the_same_submission_byte_for_byte(project):
    make(project, "submission", "EPOCHS=1")
    first = (project / "submissions/submission.csv").read_bytes()
    first_acc = json.loads((project / "models/conv_gru/metrics.json").read_text())["val_accuracy"]
    (project / "models/conv_gru/metrics.json").unlink()
    make(project, "submission", "EPOCHS=1")
    assert (project / "submissions/submission.csv").read_bytes() == first
    assert json.loads((project / "models/conv_gru/metrics.json").read_text())["val_accuracy"] == first_acc


def test_killed_training_resumes_from_its_last_epoch(project):
    epochs = 8
    make(project, "models/conv_gru/params.json", f"EPOCHS={epochs}", "BATCH_SIZE=32")
    cmd = [sys.executable, "-m", "pipeline.modeling.train", "--model", "conv_gru"]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    state = None
    while time.time() < deadline:  # wait until at least two epochs are checkpointed
        found = list((project / "models/conv_gru").glob(".work-*/state.json"))
        if found and len(json.loads(found[0].read_text())["history"]) >= 2:
            state = found[0]
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0 and state is not None
    done = len(json.loads(state.read_text())["history"])
    assert 2 <= done < epochs
    resumed = run(cmd, cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming conv_gru after epoch {done} of {epochs}" in resumed.stdout
    assert not any(line.startswith("epoch  1/") for line in resumed.stdout.splitlines())  # not from scratch
    metrics = json.loads((project / "models/conv_gru/metrics.json").read_text())
    assert metrics["epochs_run"] == epochs
    assert not state.parent.exists()


def test_make_data_and_submit_through_the_kaggle_api(tmp_path, fake_kaggle, kaggle_env):
    """With credentials and no local source: download, train, upload, report the reference."""
    from pipeline import config

    fake_kaggle.zip_bytes = config.SAMPLE_ZIP.read_bytes()
    root = copy_project(tmp_path / "project")
    out = make(root, "data", env=kaggle_env)
    assert "from the Kaggle API" in out
    out = make(root, "submit", "EPOCHS=1", env=kaggle_env)
    assert "uploaded submission.csv to digit-recognizer: ref" in out
    assert fake_kaggle.uploads and fake_kaggle.uploads[-1] == (root / "submissions/submission.csv").read_bytes()
    message = fake_kaggle.calls("CreateSubmission")[-1].json["submissionDescription"]
    assert message.startswith("conv_gru | val_acc ") and "| params " in message
    assert fake_kaggle.key not in out
    again = make(root, "submit", "EPOCHS=1", env=kaggle_env)
    assert "already uploaded" in again and len(fake_kaggle.calls("CreateSubmission")) == 1
    history = make(root, "submissions", env=kaggle_env)
    assert "conv_gru | val_acc" in history
