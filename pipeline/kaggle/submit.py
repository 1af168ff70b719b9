"""Stage 5, submit: upload a checked submission to Kaggle, or say plainly why not.

Refuses (exit 2) a submission whose provenance does not match what is on disk: the file
changed since prediction, the model was retrained, or test.csv is not the one it was
predicted from. Uploads only predictions of the competition's own test.csv (files that came
from Kaggle), once per file: a receipt beside it stops a second `make submit` re-uploading.

The receipt is written twice: "uploading" before the upload, "uploaded" after. A run killed in
between leaves "uploading"; the next run looks for that very upload among your submissions (its
message names the predictions' hash) before it spends another one.
"""

import argparse

from pipeline import config, csvcheck
from pipeline.errors import PipelineError, cli
from pipeline.files import damaged, read_json, sha256_file, write_json


def check_provenance(prov: dict, submission_sha: str, predicted_by_sha: str | None, source: dict) -> None:
    """Raise unless the submission is exactly what its provenance says it is."""
    name = prov["submission"]
    if prov["submission_sha256"] != submission_sha:
        raise PipelineError(f"{name} changed after it was predicted: run `make submission` again")
    if prov["predicted_by_sha256"] != predicted_by_sha:
        raise PipelineError(
            f"{name} was predicted by an older {prov['model']} ({prov['predicted_by']}): run `make submission` again"
        )
    if prov["data"]["test_sha256"] != source["sha256"]["test.csv"]:
        raise PipelineError(
            f"{name} was predicted from a different test.csv than data/raw holds: run `make submission` again"
        )


def upload_refusal(prov: dict, credentials: bool) -> str | None:
    """Why this (valid) submission is not uploaded, or None to go ahead."""
    data = prov["data"]
    if not data["from_kaggle"]:
        if data["origin"] == "sample":
            return (
                "its test set is the committed demo sample, not the competition's: configure Kaggle credentials "
                f"(see {kaggle_client_token_url()}) and rerun `make submit`, which then fetches the competition files "
                "and retrains on them"
            )
        return (
            f"its test set came from local data ({data['path']}), which is not known to be the competition's own "
            "test.csv: rerun with DATA=kaggle (Kaggle credentials) or in a Kaggle notebook to get the competition files"
        )
    if not credentials:
        from pipeline.kaggle import client as kaggle_client

        return kaggle_client.missing_credentials_message()
    return None


def kaggle_client_token_url() -> str:
    from pipeline.kaggle import client as kaggle_client

    return kaggle_client.TOKEN_URL


def upload_message(prov: dict) -> str:
    if prov.get("oof_accuracy") is not None:
        lo, hi = prov["oof_ci95"]
        acc = f"{prov['folds']}-fold OOF {prov['oof_accuracy']:.4%} (95% CI {lo:.2%}-{hi:.2%})"
    elif prov.get("val_accuracy") is not None:
        acc = f"val_acc {prov['val_accuracy']:.4%}"
    elif prov.get("split_val_accuracy") is not None:
        acc = f"all rows; these settings val_acc {prov['split_val_accuracy']:.4%}"
    else:
        acc = "all rows, no validation split"
    return f"{prov['model']} | {acc} | params {prov['params_hash']} | preds {prov['predicted_by_sha256'][:8]}"


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conv_gru")
    ap.add_argument("--cv", action="store_true", help="the cross-validated submission (submission-<model>-cv.csv)")
    args = ap.parse_args(argv)
    from pipeline.kaggle import client as kaggle_client

    path = config.submission_path(args.model, cv=args.cv)
    prov = read_json(path.with_suffix(".json"))
    source = read_json(config.RAW_DIR / "source.json")
    sha = sha256_file(path)
    if sha != prov["submission_sha256"]:  # truncated or edited after prediction: rebuilt on the next make
        damaged(
            path,
            None,
            f"its sha256 {sha[:12]} is not the {prov['submission_sha256'][:12]} "
            f"{path.with_suffix('.json').name} recorded",
        )
    csvcheck.read_submission(path, n_expected=source["rows"]["test"])
    predicted_by = config.OUT / prov["predicted_by"]
    check_provenance(prov, sha, sha256_file(predicted_by) if predicted_by.is_file() else None, source)

    reason = upload_refusal(prov, kaggle_client.credentials_available())
    if reason:
        print(f"wrote {path}; not uploaded: {reason}")
        return
    receipt_path = path.with_suffix(".upload.json")
    receipt = read_json(receipt_path) if receipt_path.exists() else {}
    message = upload_message(prov)
    if receipt.get("submission_sha256") == sha and receipt.get("status") == "uploading":
        landed = [s for s in kaggle_client.submissions() if s["description"] == message]
        if landed:  # the interrupted run's upload went through: record it, spend nothing
            receipt |= {"status": "uploaded", "ref": landed[0]["ref"], "remaining": kaggle_client.remaining_today()}
            write_json(receipt_path, receipt)
    if receipt.get("submission_sha256") == sha and receipt.get("status", "uploaded") == "uploaded":
        print(f"{path.name} was already uploaded (ref {receipt['ref']}, {receipt['message']}); nothing to do")
        return
    write_json(receipt_path, {"submission_sha256": sha, "message": message, "status": "uploading"})
    result = kaggle_client.submit(path, message)
    write_json(receipt_path, {"submission_sha256": sha, "message": message, "status": "uploaded", **result})
    remaining = "unknown" if result.get("remaining") is None else result["remaining"]
    print(
        f"uploaded {path.name} to {config.COMPETITION}: ref {result['ref']}, message '{message}'; "
        f"submissions left today: {remaining}. See `make submissions` for its score."
    )


if __name__ == "__main__":
    main()
