"""Stage 3, train: fit one model on the fixed split, keep its last epoch, write its metrics.

Outputs in models/<model>/: model.keras, metrics.json (validation accuracy and loss, history,
seconds per epoch, parameter count, the params used, data hash, provenance) and
val_predictions.npz (the validation rows' probabilities, for reports). The training itself is
pipeline/modeling/trainer.py's, shared with the ensembles, CV folds and searches.
"""

import argparse
from pathlib import Path

from pipeline import config
from pipeline.errors import cli
from pipeline.files import read_json
from pipeline.modeling.trainer import accuracy_note, train_model


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conv_gru")
    ap.add_argument("--out", type=Path, help="output folder holding params.json (default: models/<model>)")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    args = ap.parse_args(argv)
    out_dir = args.out or config.model_dir(args.model)
    p = read_json(out_dir / "params.json")
    metrics = train_model(
        p,
        out_dir,
        config.PROCESSED_DIR / "train.npz",
        log_dir=config.LOGS_DIR / args.model,
        verbose=0 if args.quiet else 2,
    )
    print(
        f"{args.model}: {accuracy_note(metrics)}, {metrics['parameters']:,} parameters, "
        f"{metrics['epochs_run']} epochs, "
        f"{metrics['seconds_per_epoch']} s/epoch ({metrics['backend']}) -> {out_dir}/model.keras"
    )


if __name__ == "__main__":
    main()
