"""`make compare`: the study's models side by side on one validation split.

Writes reports/compare.json and reports/compare.md: parameters, validation accuracy and loss,
epochs, seconds per epoch and prediction throughput on the test images, next to the study's
own figures.
"""

import argparse
import time

import pandas as pd

from pipeline import config
from pipeline.errors import cli
from pipeline.features import load_npz
from pipeline.files import read_json, write_json, write_text

STUDY_ACCURACY = {"mlp": 0.9368, "lstm": 0.9839, "conv_gru": 0.9872}


def prediction_throughput(model, x, batch_size: int = 1024) -> float:
    """Images per second for predicting `x`, after one warm-up call (compilation excluded)."""
    model.predict(x[:batch_size], batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=batch_size, verbose=0)
    return len(x) / (time.perf_counter() - start)


def comparison_row(name: str, metrics: dict, images_per_second: float) -> dict:
    return {
        "model": name,
        "parameters": metrics["parameters"],
        "val_accuracy": metrics.get("val_accuracy"),
        "study_accuracy": STUDY_ACCURACY.get(name),
        "val_loss": metrics.get("val_loss"),
        "val_size": metrics.get("val_size"),
        "epochs": metrics["epochs_run"],
        "seconds_per_epoch": metrics["seconds_per_epoch"],
        "predict_images_per_second": round(images_per_second),
        "backend": metrics.get("backend"),
    }


def markdown(rows: list[dict]) -> str:
    table = pd.DataFrame(rows)
    shown = pd.DataFrame({
        "model": table["model"],
        "parameters": table["parameters"].map("{:,}".format),
        "val. accuracy": table["val_accuracy"].map(lambda v: f"{v:.2%}" if v is not None else "-"),
        "study": table["study_accuracy"].map(lambda v: f"{v:.2%}" if v is not None and v == v else "-"),
        "val. loss": table["val_loss"].map(lambda v: f"{v:.4f}" if v is not None else "-"),
        "epochs": table["epochs"],
        "s/epoch": table["seconds_per_epoch"],
        "predict img/s": table["predict_images_per_second"].map("{:,}".format),
    })
    return shown.to_markdown(index=False) + "\n"


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    args = ap.parse_args(argv)
    from pipeline.modeling import backend

    backend.init()
    from pipeline.modeling.predict import load_model

    x = load_npz(config.PROCESSED_DIR / "test.npz")["x"]
    rows = []
    for name in args.models:
        metrics = read_json(config.model_dir(name) / "metrics.json")
        rate = prediction_throughput(load_model(config.model_dir(name) / "model.keras"), x)
        rows.append(comparison_row(name, metrics, rate))
    source = read_json(config.RAW_DIR / "source.json")
    note = (f"Validation: the same {rows[0]['val_size']:,} held-out rows of train.csv ({source['rows']['train']:,} rows, "
            f"{source['origin']} data) for every model; prediction over {len(x):,} test images; "
            f"backend {rows[0]['backend']}.\n")
    write_json(config.REPORTS_DIR / "compare.json", {"rows": rows, "data": source})
    write_text(config.REPORTS_DIR / "compare.md", markdown(rows) + "\n" + note)
    print(markdown(rows) + "\n" + note)


if __name__ == "__main__":
    main()
