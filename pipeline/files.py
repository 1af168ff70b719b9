"""Writing files so that a crash, a full disk or a kill never leaves a half-written output."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.errors import PipelineError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    `suffix` is for writers that insist on an extension (Keras saves only to `*.keras`).

    On any failure the temporary file is removed and the old `path`, if any, stays intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.close(fd)
    except OSError as exc:
        raise PipelineError(f"cannot write {path}: {exc.strerror}") from None
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise PipelineError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_json_if_changed(path: Path, obj) -> bool:
    """Rewrite `path` only when its content would change, so Make sees an unchanged mtime."""
    text = json.dumps(obj, indent=2) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: run the stage that makes it first") from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path} is not readable JSON: {exc}") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def replace_dir(staging: Path, target: Path) -> None:
    """Swap a fully written `staging` folder in for `target` (two renames, no copying)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    try:
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
    except OSError as exc:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise PipelineError(f"cannot replace {target}: {exc.strerror}") from None
    shutil.rmtree(old, ignore_errors=True)


def save_npz(path, **arrays) -> None:
    import numpy as np  # here, not at the top: Make imports this module before .venv exists

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path) -> dict:
    import numpy as np

    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: run the stage that makes it first (`make data`, `make train`, ...)") from None
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path} is unreadable ({exc}): delete it and rerun make") from None
