"""The validation report: workers checked for consistency, then the whole page built in tmp_path."""

import json
import struct

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, record, run_module

from pipeline.errors import PipelineError
from pipeline.evaluate import report
from pipeline.files import save_npz

N_TRAIN, N_VAL = 80, 50
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_proba(y_true: np.ndarray, wrong: dict[int, tuple[int, float]], seed: int = 0) -> np.ndarray:
    """Softmax-like rows: the true label wins, except rows in `wrong` (position -> (label, confidence))."""
    rng = np.random.default_rng(seed)
    proba = rng.random((len(y_true), 10)) * 0.02
    for i, y in enumerate(y_true):
        label, conf = wrong.get(i, (int(y), 0.6 + 0.39 * rng.random()))
        proba[i] *= (1 - conf) / proba[i].sum()
        proba[i, label] = conf
    return proba.astype(np.float32)


# 12 wrong rows (position -> (predicted label, confidence)), distinct confidences; the true label of
# position i is i % 10, so 3 -> 5 happens three times and every other confusion once.
WRONG = {
    3: (5, 0.55),
    13: (5, 0.97),
    23: (5, 0.71),
    7: (1, 0.88),
    8: (0, 0.40),
    19: (4, 0.62),
    30: (2, 0.93),
    31: (7, 0.51),
    40: (6, 0.79),
    44: (9, 0.66),
    47: (8, 0.84),
    49: (3, 0.999),
}


@pytest.fixture
def fake(tmp_path):
    """A trained-model folder (metrics.json, val_predictions.npz) and a tiny train.npz in tmp_path."""
    rng = np.random.default_rng(1)
    x = rng.random((N_TRAIN, 28, 28)).astype(np.float32)
    y = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    index = np.arange(10, 10 + N_VAL)  # validation position i is train row i + 10, label i % 10
    y_true = y[index]
    assert all(y_true[i] != label for i, (label, _) in WRONG.items())
    proba = fake_proba(y_true, WRONG)
    history = [
        {"epoch": 0, "accuracy": 0.62, "loss": 1.20, "val_accuracy": 0.70, "val_loss": 0.90, "epoch_seconds": 1.5},
        {"epoch": 1, "accuracy": 0.81, "loss": 0.55, "val_accuracy": 0.76, "val_loss": 0.70, "epoch_seconds": 0.5},
        {"epoch": 2, "accuracy": 0.90, "loss": 0.30, "val_accuracy": 0.74, "val_loss": 0.75, "epoch_seconds": 0.5},
    ]
    model_dir = tmp_path / "models" / "fake"
    model_dir.mkdir(parents=True)
    metrics = {
        "model": "fake",
        "parameters": 1234,
        "val_accuracy": 0.76,
        "val_loss": 0.7,
        "val_size": N_VAL,
        "best_epoch": 2,
        "epochs_run": 3,
        "seconds_per_epoch": 0.5,
        "seconds_first_epoch": 1.5,
        "train_seconds": 2.5,
        "backend": "jax",
        "params": {"model": "fake", "epochs": 3},
        "params_hash": "abcd1234",
        "history": history,
    }
    (model_dir / "metrics.json").write_text(json.dumps(metrics))
    save_npz(model_dir / "val_predictions.npz", index=index, y_true=y_true, proba=proba)
    record(model_dir / "metrics.json", "val_predictions.npz")
    train = tmp_path / "processed" / "train.npz"
    save_npz(train, x=x, y=y)
    record(train.parent / "features.json", "train.npz")
    return dict(
        model_dir=model_dir,
        train=train,
        out=tmp_path / "reports" / "fake",
        x=x,
        index=index,
        y_true=y_true.astype(int),
        proba=proba,
        metrics=metrics,
        n_wrong=len(WRONG),
    )


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5_000, (path, len(data))
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------- workers


def test_confusion_matrix_agrees_with_the_probabilities(fake):
    y, proba = fake["y_true"], fake["proba"]
    pred = proba.argmax(1)
    cm = report.confusion(y, pred)
    assert cm.shape == (10, 10)
    assert cm.sum() == N_VAL
    assert np.trace(cm) / cm.sum() == pytest.approx(report.accuracy(y, proba))
    assert report.accuracy(y, proba) == pytest.approx(1 - fake["n_wrong"] / N_VAL)
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(y, minlength=10))
    np.testing.assert_array_equal(cm.sum(axis=0), np.bincount(pred, minlength=10))


def test_per_class_table_is_consistent_with_the_confusion_matrix(fake):
    y, pred = fake["y_true"], fake["proba"].argmax(1)
    cm = report.confusion(y, pred)
    table = report.per_class_table(y, pred)
    assert list(table.index) == list(range(10))
    assert table["support"].sum() == N_VAL
    assert table["errors"].sum() == fake["n_wrong"]
    diag = np.diag(cm)
    np.testing.assert_allclose(table["recall"], diag / cm.sum(axis=1))
    np.testing.assert_allclose(
        table["precision"], np.divide(diag, cm.sum(axis=0), out=np.zeros(10), where=cm.sum(axis=0) > 0)
    )
    p, r = table["precision"], table["recall"]
    np.testing.assert_allclose(table["f1"], np.where(p + r > 0, 2 * p * r / (p + r).where(p + r > 0, 1), 0))


def test_misclassified_are_all_the_wrong_rows_worst_first(fake):
    y, proba, index = fake["y_true"], fake["proba"], fake["index"]
    errors = report.misclassified(y, proba, index)
    assert len(errors) == fake["n_wrong"]
    assert sorted(e["position"] for e in errors) == sorted(WRONG)
    confidences = [e["confidence"] for e in errors]
    assert confidences == sorted(confidences, reverse=True)
    assert errors[0]["position"] == 49 and errors[0]["confidence"] == pytest.approx(0.999, abs=1e-6)
    for e in errors:
        assert e["pred"] != e["true"] == y[e["position"]]
        assert e["row"] == index[e["position"]]
        assert e["confidence"] == pytest.approx(proba[e["position"]].max())
        assert e["p_true"] == pytest.approx(proba[e["position"], e["true"]])


def test_the_gallery_cap_keeps_the_most_confident_errors(fake):
    errors = report.misclassified(fake["y_true"], fake["proba"], fake["index"], cap=5)
    assert len(errors) == 5
    top5 = sorted((c for _, c in WRONG.values()), reverse=True)[:5]
    assert [e["confidence"] for e in errors] == pytest.approx(top5, abs=1e-6)


def test_top_confusions_are_the_largest_off_diagonal_cells(fake):
    y, pred = fake["y_true"], fake["proba"].argmax(1)
    cm = report.confusion(y, pred)
    pairs = report.top_confusions(cm, k=100)
    assert sum(p["count"] for p in pairs) == fake["n_wrong"]
    assert [p["count"] for p in pairs] == sorted((p["count"] for p in pairs), reverse=True)
    for p in pairs:
        assert p["true"] != p["pred"] and cm[p["true"], p["pred"]] == p["count"]
    assert len(report.top_confusions(cm, k=2)) == 2


def test_curves_plot_train_and_validation_per_epoch(fake):
    history = fake["metrics"]["history"]
    fig = report.plot_curves(history, "fake")
    loss_ax, acc_ax = fig.axes[:2]
    # The model keeps its last epoch: no "best epoch" line, the title names the last one.
    assert "best" not in fig._suptitle.get_text() and "last epoch, 3" in fig._suptitle.get_text()
    assert all(line.get_label() in ("train", "validation") for ax in (loss_ax, acc_ax) for line in ax.get_lines())
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        np.testing.assert_array_equal(lines["train"].get_xdata(), [1, 2, 3])  # 1-based epochs
        np.testing.assert_allclose(lines["train"].get_ydata(), [h[key] for h in history])
        np.testing.assert_allclose(lines["validation"].get_ydata(), [h[f"val_{key}"] for h in history])
        assert ax.get_xlabel() == "epoch" and ax.get_title()
    # Accuracy of exactly 1.0 cannot go on a logit axis: the plot must fall back, not fail.
    perfect = [dict(h, accuracy=1.0) for h in history]
    assert report.plot_curves(perfect).axes[1].get_yscale() == "linear"


def test_the_gallery_has_one_image_per_error(fake):
    errors = report.misclassified(fake["y_true"], fake["proba"], fake["index"])
    images = fake["x"][[e["row"] for e in errors]]
    fig = report.plot_errors(images, errors)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == len(errors)
    assert [ax.get_title().splitlines()[0] for ax in shown] == [f"true {e['true']} → pred {e['pred']}" for e in errors]
    np.testing.assert_array_equal(shown[0].get_images()[0].get_array(), images[0])


# ---------------------------------------------------------------- the whole report


def test_build_report_writes_a_consistent_page(fake):
    summary = report.build_report(fake["model_dir"], fake["train"], fake["out"])
    out = fake["out"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["curves.png", "confusion.png", "errors.png", "per_class.csv", "report.json", "index.html"]
    )
    for name in report.IMAGES:
        w, h = png_size(out / name)
        assert w >= 400 and h >= 150, (name, w, h)

    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    cm = np.array(saved["confusion"])
    acc = report.accuracy(fake["y_true"], fake["proba"])
    assert cm.sum() == saved["val_size"] == N_VAL
    assert np.trace(cm) / cm.sum() == pytest.approx(saved["accuracy"]) == pytest.approx(acc)
    assert saved["n_errors"] == N_VAL - np.trace(cm) == fake["n_wrong"]
    assert len(saved["errors_shown"]) == min(fake["n_wrong"], report.ERRORS_CAP)
    conf = [e["confidence"] for e in saved["errors_shown"]]
    assert conf == sorted(conf, reverse=True)
    assert sum(c["support"] for c in saved["per_class"]) == N_VAL
    assert saved["n_confident_errors"] == sum(c >= report.CONFIDENT for _, c in WRONG.values())

    table = pd.read_csv(out / "per_class.csv", index_col="digit")
    assert table["support"].sum() == N_VAL
    assert list(table.columns[:4]) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(table["recall"], [c["recall"] for c in saved["per_class"]], atol=1e-6)

    page = (out / "index.html").read_text(encoding="utf-8")
    for name in (*report.IMAGES, "per_class.csv"):
        assert f'"{name}"' in page
    assert f"{acc:.2%}" in page
    assert saved["top_confusions"][0] == {"true": 3, "pred": 5, "count": 3}
    assert "3 → 5: 3 times" in page
    assert "<table" in page and "http" not in page  # self-contained: nothing fetched from the web
    assert "best epoch" not in page.lower() and "best-epoch" not in page.lower()
    assert "validation split, 50 rows" in page and "out-of-fold" not in page
    assert not list(out.glob(".*"))  # no temporary files left behind


def explicit_paths(fake) -> list[str]:
    """A command line that names every path itself, where `make report` leaves them to config.py."""
    return [
        "--model",
        "fake",
        "--model-dir",
        str(fake["model_dir"]),
        "--data",
        str(fake["train"]),
        "--out",
        str(fake["out"]),
    ]


def test_main_takes_explicit_paths(fake, capsys):
    report.main(explicit_paths(fake))
    line = capsys.readouterr().out.strip()
    assert line.startswith("fake: validation accuracy 76.00%, 12 errors") and str(fake["out"]) in line
    assert (fake["out"] / "index.html").exists()


def test_a_perfect_model_gets_an_empty_gallery(fake):
    proba = fake_proba(fake["y_true"], {})
    save_npz(fake["model_dir"] / "val_predictions.npz", index=fake["index"], y_true=fake["y_true"], proba=proba)
    record(fake["model_dir"] / "metrics.json", "val_predictions.npz")
    summary = report.build_report(fake["model_dir"], fake["train"], fake["out"])
    assert summary["n_errors"] == 0 and summary["errors_shown"] == [] and summary["accuracy"] == 1.0
    png_size(fake["out"] / "errors.png")
    assert "No validation digit is misclassified" in (fake["out"] / "index.html").read_text(encoding="utf-8")


def test_predictions_from_other_data_are_refused(fake):
    data = np.load(fake["train"])
    save_npz(fake["train"], x=data["x"], y=(data["y"] + 1) % 10)
    record(fake["train"].parent / "features.json", "train.npz")
    with pytest.raises(PipelineError, match="does not match"):
        report.build_report(fake["model_dir"], fake["train"], fake["out"])
    assert not fake["out"].exists()


@pytest.mark.parametrize("missing", ["metrics.json", "val_predictions.npz"])
def test_an_untrained_model_is_a_one_line_error(fake, missing, capsys):
    (fake["model_dir"] / missing).unlink()
    with pytest.raises(SystemExit) as exc:
        report.main(explicit_paths(fake))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "run `make train MODEL=fake` first" in err[0]


def test_cli_runs_headless_in_a_subprocess(fake, tmp_path):
    proc = run_module(
        "pipeline.evaluate.report",
        "--model",
        "fake",
        "--model-dir",
        str(fake["model_dir"]),
        "--data",
        str(fake["train"]),
        "--out",
        str(fake["out"]),
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "DISPLAY": "", "MPLCONFIGDIR": str(tmp_path / "mpl")},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "validation accuracy 76.00%" in proc.stdout
    for name in report.IMAGES:
        png_size(fake["out"] / name)


# ---------------------------------------------------------------- a cross-validated run (--cv)


@pytest.fixture
def fake_cv(tmp_path):
    """PIPELINE_OUT=tmp_path/out: data/processed/train.npz and models/fake/cv/{oof.npz,metrics.json}
    with out-of-fold predictions of every one of the N_TRAIN rows (4 folds)."""
    out = tmp_path / "out"
    rng = np.random.default_rng(2)
    x = rng.random((N_TRAIN, 28, 28)).astype(np.float32)
    y = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    wrong = {**WRONG, 60: (1, 0.95), 75: (0, 0.45)}  # rows beyond the old validation range too
    proba = fake_proba(y.astype(int), wrong, seed=3)
    fold = np.arange(N_TRAIN) % 4
    save_npz(out / "data/processed/train.npz", x=x, y=y)
    record(out / "data/processed/features.json", "train.npz")
    cv_dir = out / "models/fake/cv"
    save_npz(
        cv_dir / "oof.npz",
        index=np.arange(N_TRAIN),
        y_true=y,
        proba=proba,
        fold=fold,
        test_proba=fake_proba(np.zeros(7, int), {}),
    )
    history = [
        {"epoch": e, "accuracy": a, "loss": loss, "val_accuracy": va, "val_loss": vl, "epoch_seconds": 0.5}
        for e, (a, loss, va, vl) in enumerate([(0.6, 1.2, 0.7, 0.9), (0.8, 0.5, 0.75, 0.7), (0.9, 0.3, 0.8, 0.6)])
    ]
    acc = float((proba.argmax(1) == y).mean())
    metrics = {
        "model": "fake",
        "cv": {"folds": 4, "seed": 42},
        "oof_accuracy": acc,
        "oof_ci95": [0.7, 0.9],
        "oof_log_loss": 0.5,
        "fold_accuracy": [float((proba.argmax(1) == y)[fold == f].mean()) for f in range(4)],
        "n_rows": N_TRAIN,
        "parameters": 1234,
        "seconds_per_epoch": 0.5,
        "train_seconds": 6.0,
        "params": {"model": "fake", "epochs": 3},
        "params_hash": "abcd1234",
        "data_sha256": "d" * 64,
        "folds_sha256": "f" * 64,
        "backend": "jax",
        "history": history,
    }
    (cv_dir / "metrics.json").write_text(json.dumps(metrics))
    record(cv_dir / "metrics.json", "oof.npz")
    env = {"PYTHONPATH": str(REPO), "PIPELINE_OUT": str(out), "DISPLAY": "", "MPLCONFIGDIR": str(tmp_path / "mpl")}
    return dict(out=out, cv_dir=cv_dir, y=y.astype(int), proba=proba, n_wrong=len(wrong), env=env, acc=acc)


def test_cv_report_covers_every_labelled_row_out_of_fold(fake_cv, tmp_path):
    proc = run_module(
        "pipeline.evaluate.report", "--model", "fake", "--cv", cwd=tmp_path, env=fake_cv["env"], timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = fake_cv["out"] / "reports/fake-cv"
    assert f"out-of-fold accuracy {fake_cv['acc']:.2%} (all {N_TRAIN} rows)" in proc.stdout
    assert str(out / "index.html") in proc.stdout
    saved = json.loads((out / "report.json").read_text())
    cm = np.array(saved["confusion"])
    assert saved["evaluation"] == "out-of-fold" and saved["val_size"] == N_TRAIN == cm.sum()
    np.testing.assert_array_equal(cm, report.confusion(fake_cv["y"], fake_cv["proba"].argmax(1)))
    assert saved["n_errors"] == fake_cv["n_wrong"] == len(saved["errors_shown"])
    assert {e["row"] for e in saved["errors_shown"]} == {*WRONG, 60, 75}  # rows of train.csv, all of them
    assert saved["accuracy"] == pytest.approx(fake_cv["acc"])
    lo, hi = saved["accuracy_ci95"]
    assert lo < saved["accuracy"] < hi
    for name in report.IMAGES:
        png_size(out / name)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"out-of-fold, all {N_TRAIN} rows" in page and "validation split" not in page
    assert "best epoch" not in page.lower()
    assert "accuracy per fold" in page and "The model is its last epoch (3 of 3)" in page
    assert "held-out accuracy was still rising at the end" in page


def test_cv_report_without_a_cv_run_names_the_make_target(fake_cv, tmp_path):
    (fake_cv["cv_dir"] / "oof.npz").unlink()
    proc = run_module(
        "pipeline.evaluate.report", "--model", "fake", "--cv", cwd=tmp_path, env=fake_cv["env"], timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "oof.npz is missing: run `make cv MODEL=fake` first" in proc.stderr


def test_cv_report_of_a_blend_has_no_curves_but_every_row(fake_cv, tmp_path):
    blend_dir = fake_cv["out"] / "models/blend/cv"
    blend_dir.parent.mkdir(parents=True)
    fake_cv["cv_dir"].rename(blend_dir)
    metrics = json.loads((blend_dir / "metrics.json").read_text()) | {
        "model": "blend",
        "history": [],
        "weights": {"cnn": 0.75, "lstm": 0.25},
    }
    (blend_dir / "metrics.json").write_text(json.dumps(metrics))
    summary = report.build_report(
        blend_dir, fake_cv["out"] / "data/processed/train.npz", tmp_path / "r", "blend", cv=True
    )
    assert summary["val_size"] == N_TRAIN and summary["training"]["epochs_run"] is None
    png_size(tmp_path / "r/curves.png")
    page = (tmp_path / "r/index.html").read_text(encoding="utf-8")
    assert f"out-of-fold, all {N_TRAIN} rows" in page and "cnn 0.750, lstm 0.250" in page
