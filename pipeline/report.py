"""Stage 4b, report: one offline HTML page on how a trained model does on the validation split.

Reads models/<model>/metrics.json and val_predictions.npz (plus the validation images from
data/processed/train.npz) and writes reports/<model>/: curves.png, confusion.png, errors.png,
per_class.csv, report.json and index.html. Every file is written atomically, index.html last.

Pure workers (arrays in, figures and tables out) do the work; build_report() wires them to
explicit folders and main() only parses the command line.
"""

import argparse
import html
import io
import json
from pathlib import Path

import numpy as np

from pipeline import config
from pipeline.errors import PipelineError, cli
from pipeline.features import load_npz
from pipeline.files import atomic_path, read_json, write_json, write_text

ERRORS_CAP = 48          # most misclassified digits shown in the gallery
GALLERY_COLUMNS = 8
TOP_PAIRS = 5            # confused pairs listed under "what to look at"
CONFIDENT = 0.9          # an error made with at least this confidence is worth a look (label noise?)
IMAGES = ("curves.png", "confusion.png", "errors.png")


# ---------------------------------------------------------------- numbers


def predictions(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label, confidence in it) per row."""
    proba = np.asarray(proba)
    pred = proba.argmax(axis=1)
    return pred, proba[np.arange(len(pred)), pred]


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, predictions(proba)[0])) if len(y_true) else 0.0


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean cross-entropy of the saved probabilities (the same loss Keras reports)."""
    from sklearn.metrics import log_loss as sk_log_loss

    return float(sk_log_loss(y_true, proba, labels=np.arange(config.N_CLASSES))) if len(y_true) else 0.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = config.N_CLASSES) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true label, column = predicted label."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = config.N_CLASSES):
    """DataFrame indexed by digit: precision, recall, f1, support, errors, most often mistaken for."""
    import pandas as pd
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.arange(n_classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion(y_true, y_pred, n_classes)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    worst = off.argmax(axis=1)
    table = pd.DataFrame({
        "precision": precision, "recall": recall, "f1": f1, "support": support.astype(int),
        "errors": off.sum(axis=1).astype(int),
        "mistaken_for": [f"{w} ({off[i, w]})" if off[i, w] else "" for i, w in enumerate(worst)],
    }, index=pd.Index(labels, name="digit"))
    return table


def top_confusions(cm: np.ndarray, k: int = TOP_PAIRS) -> list[dict]:
    """The k most frequent (true, predicted) mistakes, most frequent first; zero counts left out."""
    off = np.array(cm, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = [dict(true=int(t), pred=int(p), count=int(off[t, p]))
             for t, p in zip(*np.unravel_index(order, off.shape))]
    return [p for p in pairs if p["count"] > 0]


def misclassified(y_true: np.ndarray, proba: np.ndarray, index: np.ndarray | None = None,
                  cap: int | None = ERRORS_CAP) -> list[dict]:
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
    return [dict(position=int(i), row=int(index[i]), true=int(y_true[i]), pred=int(pred[i]),
                 confidence=float(conf[i]), p_true=float(proba[i, y_true[i]])) for i in wrong]


def summarize(metrics: dict, y_true: np.ndarray, proba: np.ndarray, index: np.ndarray) -> dict:
    """The numbers behind the page (report.json)."""
    pred, conf = predictions(proba)
    cm = confusion(y_true, pred)
    table = per_class_table(y_true, pred)
    n_errors = int((pred != np.asarray(y_true)).sum())
    return {
        "model": metrics.get("model"),
        "val_size": int(len(y_true)),
        "accuracy": accuracy(y_true, proba),
        "log_loss": log_loss(y_true, proba),
        "n_errors": n_errors,
        "n_confident_errors": int(((pred != np.asarray(y_true)) & (conf >= CONFIDENT)).sum()),
        "confident_threshold": CONFIDENT,
        "labels": list(range(config.N_CLASSES)),
        "confusion": cm.tolist(),
        "per_class": [{"digit": int(d), **{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}}
                      for d, row in table.iterrows()],
        "top_confusions": top_confusions(cm),
        "errors_shown": misclassified(y_true, proba, index),
        "training": {k: metrics.get(k) for k in (
            "val_accuracy", "val_loss", "parameters", "best_epoch", "epochs_run", "seconds_per_epoch",
            "seconds_first_epoch", "train_seconds", "backend", "params_hash")},
        "params": metrics.get("params"),
    }


def insights(summary: dict, history: list[dict]) -> list[str]:
    """Short plain-text lines a competitor should read first."""
    lines = []
    pairs = summary["top_confusions"]
    if pairs:
        lines.append("Most confused (true → predicted): "
                     + ", ".join(f"{p['true']} → {p['pred']}: {p['count']} time{'s' * (p['count'] != 1)}"
                                 for p in pairs) + ".")
    else:
        lines.append("No validation digit is misclassified.")
    per_class = [c for c in summary["per_class"] if c["support"]]
    if per_class and summary["n_errors"]:
        weak = min(per_class, key=lambda c: (c["recall"], c["digit"]))
        extra = f", most often read as {weak['mistaken_for'].split()[0]}" if weak["mistaken_for"] else ""
        lines.append(f"Weakest class: digit {weak['digit']} (recall {weak['recall']:.1%}, "
                     f"{weak['errors']} of {weak['support']} missed{extra}).")
        lines.append(f"{summary['n_confident_errors']} of {summary['n_errors']} errors were made with "
                     f"≥{CONFIDENT:.0%} confidence: check them in the gallery, some may be mislabelled or "
                     "genuinely ambiguous digits rather than model mistakes.")
    if history and all("val_accuracy" in h for h in history):
        n = len(history)
        best = int(np.argmax([h["val_accuracy"] for h in history]))
        b = history[best]
        text = f"Best epoch {best + 1} of {n}"
        if best == n - 1 and n > 1:
            text += " (the last: validation accuracy was still rising, more epochs may help)"
        elif best + 1 <= 0.6 * n and n >= 5:
            text += " (validation accuracy stopped improving well before the end)"
        if b.get("loss") and b.get("val_loss") is not None:
            text += f"; there, train loss {b['loss']:.4f} vs validation loss {b['val_loss']:.4f}"
            ratio = b["val_loss"] / b["loss"]
            if ratio >= 3:
                text += (f" ({ratio:.0f}× higher: the model fits its training rows almost perfectly, so augmentation "
                         "or regularisation is a likelier gain than more epochs)")
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


def plot_curves(history: list[dict], model: str = "", best_epoch: int | None = None):
    """Two panels, loss and accuracy per epoch (1-based), train vs validation; best epoch marked."""
    from matplotlib.ticker import FuncFormatter

    fig = _figure(figsize=(12, 4.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.array([int(h.get("epoch", i)) + 1 for i, h in enumerate(history)])
    series = {k: np.array([h.get(k, np.nan) for h in history], dtype=float)
              for k in ("loss", "val_loss", "accuracy", "val_accuracy")}
    has_val = not np.all(np.isnan(series["val_accuracy"]))
    if best_epoch is None and has_val:
        best_epoch = int(epochs[np.nanargmax(series["val_accuracy"])])
    style = dict(marker="o", markersize=4, linewidth=2)
    for ax, key, title in ((ax_loss, "loss", "Loss (cross-entropy)"), (ax_acc, "accuracy", "Accuracy")):
        ax.plot(epochs, series[key], label="train", color="#1f77b4", **style)
        if has_val:
            ax.plot(epochs, series[f"val_{key}"], label="validation", color="#d62728", **style)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
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
    if has_val and best_epoch is not None and best_epoch in epochs:
        i = int(np.flatnonzero(epochs == best_epoch)[0])
        v = series["val_accuracy"][i]
        # below the point: the best epoch is usually the top of the plot, where text would be clipped
        ax_acc.annotate(f"{v:.2%}", (best_epoch, v), textcoords="offset points", xytext=(-8, -16),
                        ha="right", va="top", fontsize=10, color="#d62728", fontweight="bold")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=10, loc="best")
    head = f"{model}: training curves" if model else "Training curves"
    if has_val and best_epoch is not None:
        head += f" (best validation accuracy at epoch {best_epoch} of {len(epochs)})"
    fig.suptitle(head, fontsize=14, fontweight="bold")
    return fig


def plot_confusion(cm: np.ndarray, title: str = "Confusion matrix (validation)"):
    """Counts in every cell; correct (diagonal) cells pale green, mistakes in reds scaled to the largest."""
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib import colormaps

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
                ax.text(j, i, str(c), ha="center", va="center", fontsize=size, fontweight="bold",
                        color="white" if c > 0.55 * vmax else "black")
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
    ax.set_title(f"{title}\n{correct:,} of {total:,} correct; green = correct, red = mistakes",
                 fontsize=13, pad=12)
    return fig


def plot_errors(images: np.ndarray, errors: list[dict], total_errors: int | None = None,
                columns: int = GALLERY_COLUMNS):
    """A grid of misclassified digits in the order given (worst first), one labelled cell each."""
    total_errors = len(errors) if total_errors is None else total_errors
    if not errors:
        fig = _figure(figsize=(8, 2))
        fig.text(0.5, 0.5, "No misclassified validation digits", ha="center", va="center", fontsize=16)
        return fig
    columns = min(columns, len(errors))
    rows = -(-len(errors) // columns)
    fig = _figure(figsize=(1.8 * columns, 2.5 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
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
        ax.set_title(f"true {e['true']} → pred {e['pred']}\n{_pct(e['confidence'])} sure", fontsize=10,
                     color=color, linespacing=1.2)
        ax.set_xlabel(f"row {e['row']} · p(true) {_pct(e['p_true'])}", fontsize=8.5, color="0.25")
    fig.suptitle(f"Misclassified validation digits, most confident mistake first "
                 f"({len(errors)} of {total_errors} shown)", fontsize=14, fontweight="bold")
    fig.supxlabel(f"red frame: ≥{CONFIDENT:.0%} sure of the wrong label (often a mislabelled or ambiguous digit); "
                  "orange: less sure.   row: 0-based data row of train.csv;  p(true): probability of the true label",
                  fontsize=10, color="0.3")
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


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.muted{color:#666}img{max-width:100%;height:auto;border:1px solid #eee}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:.3em .7em;border-bottom:1px solid #e5e5e5;text-align:right}
th{background:#f5f5f5}table.kv td:first-child{text-align:left;color:#555}
.look{background:#fff8e1;border-left:4px solid #ffb300;padding:.6em 1em}
.look li{margin:.25em 0}pre{background:#f7f7f7;padding:.6em;overflow-x:auto}
"""


def render_html(summary: dict, history: list[dict], table) -> str:
    """The report page: relative image links only, inline CSS, no scripts, readable offline."""
    e = html.escape
    t = summary["training"]
    model = summary["model"] or "model"

    def num(v, fmt):
        return "–" if v is None else format(v, fmt)

    rows = [
        ("validation accuracy", f"{summary['accuracy']:.2%} ({summary['val_size'] - summary['n_errors']:,} of "
                                f"{summary['val_size']:,})"),
        ("validation loss", f"{summary['log_loss']:.4f}"),
        ("misclassified", f"{summary['n_errors']:,} ({summary['n_confident_errors']} with ≥{CONFIDENT:.0%} confidence)"),
        ("parameters", num(t["parameters"], ",")),
        ("epochs", f"{num(t['epochs_run'], 'd')} run, best {num(t['best_epoch'], 'd')}"),
        ("seconds per epoch", f"{num(t['seconds_per_epoch'], '')} (first epoch {num(t['seconds_first_epoch'], '')}, "
                              f"total {num(t['train_seconds'], '')} s)"),
        ("backend", str(t["backend"] or "–")),
        ("params hash", str(t["params_hash"] or "–")),
    ]
    kv = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows)
    look = "".join(f"<li>{e(line)}</li>" for line in insights(summary, history))
    per_class = table.reset_index().to_html(float_format=lambda v: f"{v:.4f}", border=0, index=False,
                                            classes="per-class")
    params = e(json.dumps(summary["params"], indent=2)) if summary["params"] is not None else "–"
    shown = len(summary["errors_shown"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(model)}: validation report</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{e(model)}: validation report</h1>
<p class="muted">Digit Recognizer, held-out validation split of train.csv ({summary['val_size']:,} rows).
Numbers are computed from <code>val_predictions.npz</code>, the saved (best-epoch) model's probabilities.</p>
<table class="kv">{kv}</table>

<h2>What to look at</h2>
<ul class="look">{look}</ul>

<h2>Training curves</h2>
<p class="muted">Train metrics are averaged over each epoch while the weights change (and with any dropout or
augmentation on); validation metrics are measured at the end of the epoch.</p>
<img src="curves.png" alt="loss and accuracy per epoch, train vs validation">

<h2>Confusion matrix</h2>
<p class="muted">Rows are the true digit, columns the predicted one; off-diagonal cells are the mistakes.</p>
<img src="confusion.png" alt="confusion matrix of the validation split">

<h2>Per-class metrics</h2>
<p class="muted">Also in <a href="per_class.csv">per_class.csv</a>; <code>mistaken_for</code> is the wrong label this
digit most often got (count).</p>
{per_class}

<h2>Misclassified digits</h2>
<p class="muted">{shown} of {summary['n_errors']} errors, most confident mistake first.
“row” is the 0-based data row in train.csv (its pandas index); p(true) is the probability given to the true label.</p>
<img src="errors.png" alt="gallery of misclassified validation digits">

<h2>Parameters</h2>
<pre>{params}</pre>
<p class="muted">All numbers: <a href="report.json">report.json</a>.</p>
</body>
</html>
"""


# ---------------------------------------------------------------- wiring


def load_inputs(model_dir: Path, processed_train: Path, model: str | None = None):
    """metrics, (index, y_true, proba) and the validation images, checked against each other."""
    model_dir = Path(model_dir)
    model = model or model_dir.name
    again = f"run `make train MODEL={model}` first"
    metrics_path, preds_path = model_dir / "metrics.json", model_dir / "val_predictions.npz"
    if not metrics_path.exists():
        raise PipelineError(f"{metrics_path} is missing: {again}")
    if not preds_path.exists():
        raise PipelineError(f"{preds_path} is missing (a full-data model has no validation split): {again}")
    metrics = read_json(metrics_path)
    preds = load_npz(preds_path)
    if not {"index", "y_true", "proba"} <= preds.keys():
        raise PipelineError(f"{preds_path} lacks index/y_true/proba: {again}")
    index, y_true, proba = preds["index"].astype(np.int64), preds["y_true"].astype(np.int64), preds["proba"]
    if proba.ndim != 2 or proba.shape != (len(y_true), config.N_CLASSES) or len(index) != len(y_true):
        raise PipelineError(f"{preds_path} has inconsistent shapes {index.shape}, {y_true.shape}, {proba.shape}: {again}")
    data = load_npz(processed_train)
    x, y = data["x"], data["y"]
    if len(index) and (index.min() < 0 or index.max() >= len(y) or not np.array_equal(y[index], y_true)):
        raise PipelineError(f"{preds_path} does not match {processed_train} (the data changed since training): {again}")
    return metrics, index, y_true, proba, x[index]


def build_report(model_dir: Path, processed_train: Path, out_dir: Path, model: str | None = None) -> dict:
    """Write the six report files into out_dir (index.html last); returns report.json's content."""
    metrics, index, y_true, proba, images = load_inputs(model_dir, processed_train, model)
    model = model or metrics.get("model") or Path(model_dir).name
    metrics = {**metrics, "model": model}
    out_dir = Path(out_dir)
    history = metrics.get("history") or []
    summary = summarize(metrics, y_true, proba, index)
    pred = predictions(proba)[0]
    table = per_class_table(y_true, pred)

    for name, fig in (
        ("curves.png", lambda: plot_curves(history, model, metrics.get("best_epoch"))),
        ("confusion.png", lambda: plot_confusion(np.array(summary["confusion"]),
                                                 f"{model}: confusion matrix (validation)")),
        ("errors.png", lambda: plot_errors(images[[e["position"] for e in summary["errors_shown"]]],
                                           summary["errors_shown"], summary["n_errors"])),
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
    ap.add_argument("--model-dir", type=Path, help="trained model folder (default: models/<model>)")
    ap.add_argument("--data", type=Path, help="processed train arrays (default: data/processed/train.npz)")
    ap.add_argument("--out", type=Path, help="output folder (default: reports/<model>)")
    args = ap.parse_args(argv)
    out_dir = args.out or config.REPORTS_DIR / args.model
    summary = build_report(args.model_dir or config.model_dir(args.model),
                           args.data or config.PROCESSED_DIR / "train.npz", out_dir, args.model)
    pairs = summary["top_confusions"]
    most = f"; most confused {pairs[0]['true']} → {pairs[0]['pred']} ({pairs[0]['count']})" if pairs else ""
    print(f"{args.model}: validation accuracy {summary['accuracy']:.2%}, {summary['n_errors']} errors{most} "
          f"-> {out_dir / 'index.html'}")


if __name__ == "__main__":
    main()
