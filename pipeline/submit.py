"""Stage 5, submit: upload a checked submission to Kaggle, or say plainly why not.

Refuses (exit 2) a submission whose provenance does not match what is on disk: the file
changed since prediction, the model was retrained, or test.csv is not the one it was
predicted from. Uploads only predictions of the competition's own test.csv (files that came
from Kaggle), once per file: a receipt beside it stops a second `make submit` re-uploading.
"""

import argparse

from pipeline import config, csvcheck
from pipeline.errors import PipelineError, cli
from pipeline.files import read_json, sha256_file, write_json


def check_provenance(prov: dict, submission_sha: str, model_sha: str, source: dict) -> None:
    """Raise unless the submission is exactly what its provenance says it is."""
    name = prov["submission"]
    if prov["submission_sha256"] != submission_sha:
        raise PipelineError(f"{name} changed after it was predicted: run `make submission` again")
    if prov["model_sha256"] != model_sha:
        raise PipelineError(f"{name} was predicted by an older {prov['model']} model: run `make submission` again")
    if prov["data"]["test_sha256"] != source["sha256"]["test.csv"]:
        raise PipelineError(f"{name} was predicted from a different test.csv than data/raw holds: run `make submission` again")


def upload_refusal(prov: dict, credentials: bool) -> str | None:
    """Why this (valid) submission is not uploaded, or None to go ahead."""
    data = prov["data"]
    if not data["competition"]:
        what = "the committed demo sample" if data["origin"] == "sample" else f"local data ({data['path']})"
        return (f"its test set came from {what}, not from Kaggle, so its predictions would not score "
                "(get the competition files with the Kaggle API or in a Kaggle notebook)")
    if not credentials:
        from pipeline import kaggle_client

        return kaggle_client.missing_credentials_message()
    return None


def upload_message(prov: dict) -> str:
    if prov.get("val_accuracy") is not None:
        acc = f"val_acc {prov['val_accuracy']:.4%}"
    elif prov.get("split_val_accuracy") is not None:
        acc = f"all rows; these settings val_acc {prov['split_val_accuracy']:.4%}"
    else:
        acc = "all rows, no validation split"
    return f"{prov['model']} | {acc} | params {prov['params_hash']} | model {prov['model_sha256'][:8]}"


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conv_gru")
    args = ap.parse_args(argv)
    from pipeline import kaggle_client

    path = config.submission_path(args.model)
    prov = read_json(path.with_suffix(".json"))
    source = read_json(config.RAW_DIR / "source.json")
    csvcheck.read_submission(path, n_expected=source["rows"]["test"])
    sha = sha256_file(path)
    check_provenance(prov, sha, sha256_file(config.model_dir(args.model) / "model.keras"), source)

    reason = upload_refusal(prov, kaggle_client.credentials_available())
    if reason:
        print(f"wrote {path.relative_to(config.ROOT)}; not uploaded: {reason}")
        return
    receipt_path = path.with_suffix(".upload.json")
    if receipt_path.exists() and read_json(receipt_path).get("submission_sha256") == sha:
        receipt = read_json(receipt_path)
        print(f"{path.name} was already uploaded (ref {receipt['ref']}, {receipt['message']}); nothing to do")
        return
    message = upload_message(prov)
    result = kaggle_client.submit(path, message)
    write_json(receipt_path, {"submission_sha256": sha, "message": message, **result})
    remaining = "unknown" if result.get("remaining") is None else result["remaining"]
    print(f"uploaded {path.name} to {config.COMPETITION}: ref {result['ref']}, message '{message}'; "
          f"submissions left today: {remaining}. See `make submissions` for its score.")


if __name__ == "__main__":
    main()
