"""The baseline `make bench` times: the study's model as a plain Kaggle notebook writes it.

Standalone on purpose: it imports nothing from this project, only pandas, scikit-learn and Keras,
and runs with the framework's defaults (TensorFlow backend, no determinism, no seeds beyond the
split's, Keras's default jit_compile). The only additions to the notebook are the timing: one
epoch-end callback and one JSON line of timings printed at the end, which the harness reads.

    python pipeline/speed/baseline_notebook.py --data-dir data/raw --out submission.csv [--epochs 10]
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # what a Kaggle notebook runs

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402


class EpochTimes(keras.callbacks.Callback):
    """Seconds since fit() began, and the validation accuracy, at the end of each epoch."""

    def __init__(self, start):
        super().__init__()
        self.start, self.epochs = start, []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({"elapsed": time.perf_counter() - self.start, "val_accuracy": float(logs["val_accuracy"])})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="/kaggle/input/digit-recognizer")
    ap.add_argument("--out", default="submission.csv")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    t_start = time.perf_counter()

    train = pd.read_csv(os.path.join(args.data_dir, "train.csv"))
    test = pd.read_csv(os.path.join(args.data_dir, "test.csv"))
    y = train["label"].values
    X = train.drop(columns=["label"]).values / 255.0
    X = X.reshape(-1, 28, 28)  # each image a sequence of 28 rows of 28 pixels
    X_test = (test.values / 255.0).reshape(-1, 28, 28)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.1, random_state=42, stratify=y)
    t_loaded = time.perf_counter()

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Conv1D(32, 3, activation="relu"),
            keras.layers.Conv1D(32, 3, activation="relu"),
            keras.layers.MaxPool1D(2),
            keras.layers.GRU(64, return_sequences=True, reset_after=False),
            keras.layers.GRU(16, reset_after=False),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()

    t_fit = time.perf_counter()
    timer = EpochTimes(t_fit)
    history = model.fit(
        X_train, y_train, batch_size=32, epochs=args.epochs, validation_data=(X_val, y_val), callbacks=[timer]
    )
    fit_seconds = time.perf_counter() - t_fit

    t_predict = time.perf_counter()
    predictions = np.argmax(model.predict(X_test), axis=1)
    predict_seconds = time.perf_counter() - t_predict

    submission = pd.DataFrame({"ImageId": np.arange(1, len(predictions) + 1), "Label": predictions})
    submission.to_csv(args.out, index=False)

    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "parameters": int(model.count_params()),
                "batch_size": 32,
                "epochs_run": len(timer.epochs),
                "train_rows": int(len(X_train)),
                "val_rows": int(len(X_val)),
                "test_rows": int(len(X_test)),
                "load_seconds": t_loaded - t_start,
                "fit_seconds": fit_seconds,
                "predict_seconds": predict_seconds,
                "epochs": timer.epochs,
                "val_accuracy": float(history.history["val_accuracy"][-1]),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
