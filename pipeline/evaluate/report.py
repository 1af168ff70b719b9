"""Stage 4b, report: one offline HTML page on how a trained model does on rows it never trained on.

Reads models/<model>/metrics.json and val_predictions.npz (plus the validation images from
data/processed/train.npz) and writes reports/<model>/: curves.png, confusion.png, errors.png,
per_class.csv, report.json and index.html. Every file is written atomically, index.html last.
With --cv it reads a k-fold run instead, models/<model>/cv/metrics.json and oof.npz (out-of-fold
predictions of all labelled rows), and writes reports/<model>-cv/.

Pure workers (arrays in, figures and tables out) do the work; build_report() wires them to
explicit folders and main() only parses the command line.
"""

import argparse
import io
import json
from pathlib import Path

import numpy as np

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.files import atomic_path, load_npz, read_json, write_json, write_text
from pipeline.stats import log_loss

ERRORS_CAP = 48  # most misclassified digits shown in the gallery
GALLERY_COLUMNS = 8
TOP_PAIRS = 5  # confused pairs listed under "what to look at"
CONFIDENT = 0.9  # an error made with at least this confidence is worth a look (label noise?)
IMAGES = ("curves.png", "confusion.png", "errors.png")
VALIDATION, OUT_OF_FOLD = "validation", "out-of-fold"  # what the rows of a report are


# ---------------------------------------------------------------- numbers


def predictions(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label, confidence in it) per row."""
    proba = np.asarray(proba)
    pred = proba.argmax(axis=1)
    return pred, proba[np.arange(len(pred)), pred]


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, predictions(proba)[0])) if len(y_true) else 0.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = config.N_CLASSES) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true label, column = predicted label."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = config.N_CLASSES):
    """DataFrame indexed by digit: precision, recall, f1, support, errors, most often mistaken for."""
    import pandas as pd
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.arange(n_classes)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion(y_true, y_pred, n_classes)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    worst = off.argmax(axis=1)
    table = pd.DataFrame(
        {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support.astype(int),
            "errors": off.sum(axis=1).astype(int),
            "mistaken_for": [f"{w} ({off[i, w]})" if off[i, w] else "" for i, w in enumerate(worst)],
        },
        index=pd.Index(labels, name="digit"),
    )
    return table


def top_confusions(cm: np.ndarray, k: int = TOP_PAIRS) -> list[dict]:
    """The k most frequent (true, predicted) mistakes, most frequent first; zero counts left out."""
    off = np.array(cm, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = [dict(true=int(t), pred=int(p), count=int(off[t, p])) for t, p in zip(*np.unravel_index(order, off.shape))]
    return [p for p in pairs if p["count"] > 0]


def misclassified(
    y_true: np.ndarray, proba: np.ndarray, index: np.ndarray | None = None, cap: int | None = ERRORS_CAP
) -> list[dict]:
    """Wrong rows, worst first (highest confidence in the wrong label), at most `cap` of them.

    Each entry: position (in the validation arrays), row (in train.csv / train.npz), true, pred,
    confidence (probability of the predicted label), p_true (probability of the true label).
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    pred, conf = predictions(proba)
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:cap]
    index = np.arange(len(y_true)) if index is None else np.asarray(index)
    return [
        dict(
            position=int(i),
            row=int(index[i]),
            true=int(y_true[i]),
            pred=int(pred[i]),
            confidence=float(conf[i]),
            p_true=float(proba[i, y_true[i]]),
        )
        for i in wrong
    ]


def rows_text(evaluation: str, n: int) -> str:
    """How the page names its rows: "validation split (4,200 rows)" or "out-of-fold, all 42,000 rows"."""
    return f"out-of-fold, all {n:,} rows" if evaluation == OUT_OF_FOLD else f"validation split, {n:,} rows"


def summarize(
    metrics: dict, y_true: np.ndarray, proba: np.ndarray, index: np.ndarray, evaluation: str = VALIDATION
) -> dict:
    """The numbers behind the page (report.json). evaluation: VALIDATION or OUT_OF_FOLD (a CV run)."""
    from pipeline.stats import accuracy_ci

    pred, conf = predictions(proba)
    cm = confusion(y_true, pred)
    table = per_class_table(y_true, pred)
    n_errors = int((pred != np.asarray(y_true)).sum())
    history = metrics.get("history") or []
    return {
        "model": metrics.get("model"),
        "evaluation": evaluation,
        "rows": rows_text(evaluation, len(y_true)),
        "val_size": int(len(y_true)),
        "accuracy": accuracy(y_true, proba),
        "accuracy_ci95": list(accuracy_ci(pred == np.asarray(y_true))) if len(y_true) else None,
        "log_loss": log_loss(y_true, proba),
        "n_errors": n_errors,
        "n_confident_errors": int(((pred != np.asarray(y_true)) & (conf >= CONFIDENT)).sum()),
        "confident_threshold": CONFIDENT,
        "labels": list(range(config.N_CLASSES)),
        "confusion": cm.tolist(),
        "per_class": [
            {"digit": int(d), **{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}}
            for d, row in table.iterrows()
        ],
        "top_confusions": top_confusions(cm),
        "errors_shown": misclassified(y_true, proba, index),
        "training": {
            k: metrics.get(k)
            for k in (
                "val_accuracy",
                "val_loss",
                "oof_accuracy",
                "oof_log_loss",
                "fold_accuracy",
                "oof_ensemble_accuracy",
                "oof_ensemble_ci95",
                "cv",
                "parameters",
                "seconds_per_epoch",
                "seconds_first_epoch",
                "train_seconds",
                "backend",
                "params_hash",
                "weights",
            )
        }
        | {"epochs_run": metrics.get("epochs_run", len(history) or None)},
        "params": metrics.get("params"),
    }


def insights(summary: dict, history: list[dict]) -> list[str]:
    """Short plain-text lines a competitor should read first."""
    lines = []
    pairs = summary["top_confusions"]
    if pairs:
        lines.append(
            "Most confused (true → predicted): "
            + ", ".join(f"{p['true']} → {p['pred']}: {p['count']} time{'s' * (p['count'] != 1)}" for p in pairs)
            + "."
        )
    else:
        lines.append(
            "No digit is misclassified out of fold."
            if summary.get("evaluation") == OUT_OF_FOLD
            else "No validation digit is misclassified."
        )
    per_class = [c for c in summary["per_class"] if c["support"]]
    if per_class and summary["n_errors"]:
        weak = min(per_class, key=lambda c: (c["recall"], c["digit"]))
        extra = f", most often read as {weak['mistaken_for'].split()[0]}" if weak["mistaken_for"] else ""
        lines.append(
            f"Weakest class: digit {weak['digit']} (recall {weak['recall']:.1%}, "
            f"{weak['errors']} of {weak['support']} missed{extra})."
        )
        lines.append(
            f"{summary['n_confident_errors']} of {summary['n_errors']} errors were made with "
            f"≥{CONFIDENT:.0%} confidence: check them in the gallery, some may be mislabelled or "
            "genuinely ambiguous digits rather than model mistakes."
        )
    if history and all("val_accuracy" in h for h in history):
        # The model keeps its last epoch: describe that one, never pick an epoch on held-out rows.
        held = "held-out" if summary.get("evaluation") == OUT_OF_FOLD else "validation"
        n = len(history)
        last = history[-1]
        text = f"The model is its last epoch ({n} of {n})"
        if n > 1 and last["val_accuracy"] > history[-2]["val_accuracy"]:
            text += f"; {held} accuracy was still rising at the end, more epochs may help"
        if last.get("loss") and last.get("val_loss") is not None:
            text += f"; train loss {last['loss']:.4f} vs {held} loss {last['val_loss']:.4f}"
            ratio = last["val_loss"] / last["loss"]
            if ratio >= 3:
                text += (
                    f" ({ratio:.0f}× higher: the model fits its training rows almost perfectly, so augmentation "
                    "or regularisation is a likelier gain than more epochs)"
                )
        lines.append(text + ".")
    return lines


# ---------------------------------------------------------------- figures


def _figure(**kwargs):
    """A Figure drawn by the Agg canvas: no pyplot, no display, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def plot_curves(history: list[dict], model: str = "", val_label: str = "validation"):
    """Two panels, loss and accuracy per epoch (1-based), train vs validation (val_label: how the
    held-out rows are named); the model is its last epoch, whose validation accuracy is annotated."""
    from matplotlib.ticker import FuncFormatter

    if not history:
        fig = _figure(figsize=(12, 2))
        fig.text(
            0.5,
            0.5,
            f"{model + ': ' if model else ''}no training curves (this model trains no network of its own)",
            ha="center",
            va="center",
            fontsize=14,
        )
        return fig
    fig = _figure(figsize=(12, 4.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.array([int(h.get("epoch", i)) + 1 for i, h in enumerate(history)])
    series = {
        k: np.array([h.get(k, np.nan) for h in history], dtype=float)
        for k in ("loss", "val_loss", "accuracy", "val_accuracy")
    }
    has_val = not np.all(np.isnan(series["val_accuracy"]))
    style = dict(marker="o", markersize=4, linewidth=2)
    for ax, key, title in ((ax_loss, "loss", "Loss (cross-entropy)"), (ax_acc, "accuracy", "Accuracy")):
        ax.plot(epochs, series[key], label="train", color="#1f77b4", **style)
        if has_val:
            ax.plot(epochs, series[f"val_{key}"], label=val_label, color="#d62728", **style)
        ax.set_title(title, fontsize=13)
        ax.set_xlabel("epoch", fontsize=11)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
        ax.tick_params(labelsize=10)
        if len(epochs) <= 30:
            ax.set_xticks(epochs if len(epochs) <= 15 else epochs[::2])
    # Loss spans orders of magnitude; a log axis keeps the late, small differences visible.
    losses = np.concatenate([series["loss"], series["val_loss"]])
    if np.all(losses[~np.isnan(losses)] > 0):
        ax_loss.set_yscale("log")
        ax_loss.set_title("Loss (cross-entropy, log scale)", fontsize=13)
    ax_loss.set_ylabel("loss", fontsize=11)
    # Accuracy climbs to ~99%: a logit axis spreads 90% / 99% / 99.9% evenly instead of a flat line.
    accs = np.concatenate([series["accuracy"], series["val_accuracy"]])
    accs = accs[~np.isnan(accs)]
    if len(accs) and np.all((accs > 0) & (accs < 1)):
        ax_acc.set_yscale("logit")
        ax_acc.set_title("Accuracy (logit scale: 90%, 99%, 99.9% evenly spaced)", fontsize=12)
        ax_acc.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.4g}%"))
        ax_acc.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    else:
        ax_acc.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.4g}%"))
    ax_acc.set_ylabel("accuracy", fontsize=11)
    last_val = series["val_accuracy"][-1]
    if has_val and not np.isnan(last_val):
        # below the point: the last epoch is usually near the top of the plot, where text would be clipped
        ax_acc.annotate(
            f"{last_val:.2%}",
            (epochs[-1], last_val),
            textcoords="offset points",
            xytext=(-8, -16),
            ha="right",
            va="top",
            fontsize=10,
            color="#d62728",
            fontweight="bold",
        )
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=10, loc="best")
    head = f"{model}: training curves" if model else "Training curves"
    head += f" (the model is its last epoch, {int(epochs[-1])})"
    fig.suptitle(head, fontsize=14, fontweight="bold")
    return fig


def plot_confusion(cm: np.ndarray, title: str = "Confusion matrix (validation)"):
    """Counts in every cell; correct (diagonal) cells pale green, mistakes in reds scaled to the largest."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, Normalize

    cm = np.asarray(cm)
    n = cm.shape[0]
    fig = _figure(figsize=(8, 7))
    ax = fig.add_subplot()
    off = cm.astype(float)
    np.fill_diagonal(off, np.nan)
    vmax = max(1.0, float(np.nanmax(off)) if n else 1.0)
    # Skip the palest end of Reds so a single mistake is still visible against white.
    reds = ListedColormap(colormaps["Reds"](np.linspace(0.12, 1.0, 256))).with_extremes(bad=(1, 1, 1, 0))
    im = ax.imshow(np.where(off > 0, off, np.nan), cmap=reds, norm=Normalize(0, vmax), interpolation="nearest")
    diag = np.full(cm.shape, np.nan)
    diag[np.diag_indices(n)] = 1.0
    green = ListedColormap(["#d9f0d3"]).with_extremes(bad=(1, 1, 1, 0))
    ax.imshow(diag, cmap=green, vmin=0, vmax=1, interpolation="nearest")
    size = 12 if n <= 10 else 9
    for i in range(n):
        for j in range(n):
            c = int(cm[i, j])
            if i == j:
                ax.text(j, i, str(c), ha="center", va="center", fontsize=size, color="#1b5e20", fontweight="bold")
            elif c:
                ax.text(
                    j,
                    i,
                    str(c),
                    ha="center",
                    va="center",
                    fontsize=size,
                    fontweight="bold",
                    color="white" if c > 0.55 * vmax else "black",
                )
            else:
                ax.text(j, i, "·", ha="center", va="center", fontsize=size, color="0.75")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.tick_params(labelsize=12, length=0)
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("predicted label", fontsize=12)
    ax.set_ylabel("true label", fontsize=12)
    ax.set_xticks(np.arange(-0.5, n), minor=True)
    ax.set_yticks(np.arange(-0.5, n), minor=True)
    ax.grid(which="minor", color="0.85", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    bar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("misclassified digits (off-diagonal cells)", fontsize=11)
    if vmax <= 12:
        bar.set_ticks(np.arange(0, int(vmax) + 1))
    total, correct = int(cm.sum()), int(np.trace(cm))
    ax.set_title(f"{title}\n{correct:,} of {total:,} correct; green = correct, red = mistakes", fontsize=13, pad=12)
    return fig


def plot_errors(
    images: np.ndarray,
    errors: list[dict],
    total_errors: int | None = None,
    columns: int = GALLERY_COLUMNS,
    rows: str = "validation",
):
    """A grid of misclassified digits in the order given (worst first), one labelled cell each.
    `rows` names the rows they come from ("validation", or "out-of-fold, all 42,000 rows")."""
    total_errors = len(errors) if total_errors is None else total_errors
    if not errors:
        fig = _figure(figsize=(8, 2))
        fig.text(0.5, 0.5, f"No misclassified digits ({rows})", ha="center", va="center", fontsize=16)
        return fig
    columns = min(columns, len(errors))
    n_rows = -(-len(errors) // columns)
    fig = _figure(figsize=(1.8 * columns, 2.5 * n_rows + 0.6))
    axes = np.atleast_1d(fig.subplots(n_rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, img, e in zip(axes, images, errors):
        ax.set_axis_on()
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        color = "#b71c1c" if e["confidence"] >= CONFIDENT else "#e65100"
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(1.5)
        ax.set_title(
            f"true {e['true']} → pred {e['pred']}\n{_pct(e['confidence'])} sure",
            fontsize=10,
            color=color,
            linespacing=1.2,
        )
        ax.set_xlabel(f"row {e['row']} · p(true) {_pct(e['p_true'])}", fontsize=8.5, color="0.25")
    fig.suptitle(
        f"Misclassified digits ({rows}), most confident mistake first ({len(errors)} of {total_errors} shown)",
        fontsize=14,
        fontweight="bold",
    )
    fig.supxlabel(
        f"red frame: ≥{CONFIDENT:.0%} sure of the wrong label (often a mislabelled or ambiguous digit); "
        "orange: less sure.   row: 0-based data row of train.csv;  p(true): probability of the true label",
        fontsize=10,
        color="0.3",
    )
    return fig


def _pct(p: float) -> str:
    """A probability as a short percentage that never rounds a near-certainty to 100% or 0%."""
    if p > 0.999:
        return ">99.9%"
    if p < 0.001:
        return "<0.1%"
    return f"{p:.1%}"


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, facecolor="white")


# ---------------------------------------------------------------- page


TEMPLATE = Path(__file__).with_name("templates") / "report.html"


def render_html(summary: dict, history: list[dict], table) -> str:
    """The report page, from templates/report.html (Jinja2, every value escaped)."""
    import jinja2
    from markupsafe import Markup

    t = summary["training"]
    oof = summary.get("evaluation") == OUT_OF_FOLD
    n = summary["val_size"]

    def num(v, fmt):
        return "–" if v is None else format(v, fmt)

    scored = "out-of-fold" if oof else "validation"
    ci = summary.get("accuracy_ci95")
    facts = [
        (
            f"{scored} accuracy",
            f"{summary['accuracy']:.2%} ({n - summary['n_errors']:,} of {n:,}"
            + (f"; 95% interval {ci[0]:.2%}–{ci[1]:.2%})" if ci else ")"),
        ),
        (f"{scored} loss", f"{summary['log_loss']:.4f}"),
        (
            "misclassified",
            f"{summary['n_errors']:,} ({summary['n_confident_errors']} with ≥{CONFIDENT:.0%} confidence)",
        ),
    ]
    if oof:
        folds = t.get("fold_accuracy") or []
        cv = t.get("cv") or {}
        facts.append(
            (
                "folds",
                f"{cv.get('folds', len(folds) or '–')} (stratified, seed {cv.get('seed', '–')})"
                + (f" x {cv['repeats']} repeats (seeds +1, ...)" if cv.get("repeats", 1) > 1 else "")
                + (f"; accuracy per fold {', '.join(f'{a:.2%}' for a in folds)}" if folds else ""),
            )
        )
    if t.get("oof_ensemble_accuracy") is not None:  # repeated k-fold: each row's out-of-fold models averaged
        lo, hi = t["oof_ensemble_ci95"]
        facts.append(
            (
                "ensemble OOF accuracy",
                f"{t['oof_ensemble_accuracy']:.2%} (each row's {t['cv']['repeats']} out-of-fold models averaged; "
                f"95% interval {lo:.2%}–{hi:.2%})",
            )
        )
    if t.get("weights"):  # a blend: its members and their (all-rows) weights
        facts.append(("blend weights", ", ".join(f"{m} {w:.3f}" for m, w in t["weights"].items())))
    facts += [
        ("parameters", num(t["parameters"], ",")),
        ("epochs", f"{num(t['epochs_run'], 'd')} (the model is its last epoch)" if t["epochs_run"] else "–"),
        (
            "seconds per epoch",
            f"{num(t['seconds_per_epoch'], '')} (first epoch {num(t['seconds_first_epoch'], '')}, "
            f"total {num(t['train_seconds'], '')} s)",
        ),
        ("backend", str(t["backend"] or "–")),
        ("params hash", str(t["params_hash"] or "–")),
    ]
    model = summary["model"] or "model"
    page = jinja2.Environment(autoescape=True, keep_trailing_newline=True).from_string(
        TEMPLATE.read_text(encoding="utf-8")
    )
    return page.render(
        title=f"{model}: cross-validation report (out-of-fold)" if oof else f"{model}: validation report",
        oof=oof,
        n=n,
        facts=facts,
        insights=insights(summary, history),
        rows=summary["rows"],
        per_class=Markup(
            table.reset_index().to_html(float_format=lambda v: f"{v:.4f}", border=0, index=False, classes="per-class")
        ),
        shown=len(summary["errors_shown"]),
        n_errors=summary["n_errors"],
        params=json.dumps(summary["params"], indent=2) if summary["params"] is not None else "–",
    )


# ---------------------------------------------------------------- wiring


def rerun_hint(model: str, cv: bool) -> str:
    if not cv:
        return f"run `make train MODEL={model}` first"
    return "run `make blend` first" if model == "blend" else f"run `make cv MODEL={model}` first"


def load_inputs(model_dir: Path, processed_train: Path, model: str | None = None, cv: bool = False):
    """metrics, (index, y_true, proba) and all the train images, checked against each other.
    cv: model_dir is a CV run (metrics.json, oof.npz) rather than a trained model (val_predictions.npz)."""
    model_dir = Path(model_dir)
    model = model or (model_dir.parent.name if cv else model_dir.name)
    again = rerun_hint(model, cv)
    metrics_path = model_dir / "metrics.json"
    preds_path = model_dir / ("oof.npz" if cv else "val_predictions.npz")
    if not metrics_path.exists():
        raise PipelineError(f"{metrics_path} is missing: {again}")
    if not preds_path.exists():
        why = "" if cv else " (a full-data model has no validation split)"
        raise PipelineError(f"{preds_path} is missing{why}: {again}")
    metrics = read_json(metrics_path)
    preds = load_npz(preds_path)
    if not {"index", "y_true", "proba"} <= preds.keys():
        raise PipelineError(f"{preds_path} lacks index/y_true/proba: {again}")
    index, y_true, proba = preds["index"].astype(np.int64), preds["y_true"].astype(np.int64), preds["proba"]
    if proba.ndim != 2 or proba.shape != (len(y_true), config.N_CLASSES) or len(index) != len(y_true):
        raise PipelineError(
            f"{preds_path} has inconsistent shapes {index.shape}, {y_true.shape}, {proba.shape}: {again}"
        )
    data = load_npz(processed_train)
    x, y = data["x"], data["y"]
    if len(index) and (index.min() < 0 or index.max() >= len(y) or not np.array_equal(y[index], y_true)):
        raise PipelineError(f"{preds_path} does not match {processed_train} (the data changed since training): {again}")
    if cv and len(index) != len(y):
        raise PipelineError(f"{preds_path} covers {len(index):,} of the {len(y):,} rows of {processed_train}: {again}")
    return metrics, index, y_true, proba, x


def build_report(
    model_dir: Path, processed_train: Path, out_dir: Path, model: str | None = None, cv: bool = False
) -> dict:
    """Write the six report files into out_dir (index.html last); returns report.json's content."""
    metrics, index, y_true, proba, x = load_inputs(model_dir, processed_train, model, cv)
    model = model or metrics.get("model") or Path(model_dir).name
    metrics = {**metrics, "model": model}
    out_dir = Path(out_dir)
    history = metrics.get("history") or []
    evaluation = OUT_OF_FOLD if cv else VALIDATION
    summary = summarize(metrics, y_true, proba, index, evaluation)
    pred = predictions(proba)[0]
    table = per_class_table(y_true, pred)
    rows = summary["rows"]

    for name, fig in (
        ("curves.png", lambda: plot_curves(history, model, "held-out fold (mean)" if cv else "validation")),
        (
            "confusion.png",
            lambda: plot_confusion(np.array(summary["confusion"]), f"{model}: confusion matrix ({rows})"),
        ),
        (
            "errors.png",
            lambda: plot_errors(
                x[[e["row"] for e in summary["errors_shown"]]], summary["errors_shown"], summary["n_errors"], rows=rows
            ),
        ),
    ):
        save_figure(fig(), out_dir / name)
    buf = io.StringIO()
    table.to_csv(buf, float_format="%.6f")
    write_text(out_dir / "per_class.csv", buf.getvalue())
    write_json(out_dir / "report.json", summary)
    write_text(out_dir / "index.html", render_html(summary, history, table))
    return summary


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conv_gru")
    ap.add_argument(
        "--cv", action="store_true", help="report the model's k-fold run: out-of-fold predictions of every labelled row"
    )
    ap.add_argument(
        "--model-dir", type=Path, help="trained model folder (default: models/<model>, or models/<model>/cv with --cv)"
    )
    ap.add_argument("--data", type=Path, help="processed train arrays (default: data/processed/train.npz)")
    ap.add_argument("--out", type=Path, help="output folder (default: reports/<model>, or reports/<model>-cv)")
    args = ap.parse_args(argv)
    out_dir = args.out or config.REPORTS_DIR / (f"{args.model}-cv" if args.cv else args.model)
    model_dir = args.model_dir or (config.cv_dir(args.model) if args.cv else config.model_dir(args.model))
    summary = build_report(model_dir, args.data or config.PROCESSED_DIR / "train.npz", out_dir, args.model, args.cv)
    pairs = summary["top_confusions"]
    most = f"; most confused {pairs[0]['true']} → {pairs[0]['pred']} ({pairs[0]['count']})" if pairs else ""
    scored = (
        f"out-of-fold accuracy {summary['accuracy']:.2%} (all {summary['val_size']:,} rows)"
        if args.cv
        else f"validation accuracy {summary['accuracy']:.2%}"
    )
    print(f"{args.model}: {scored}, {summary['n_errors']} errors{most} -> {out_dir / 'index.html'}")


if __name__ == "__main__":
    main()
