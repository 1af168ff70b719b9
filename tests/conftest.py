"""Shared pytest fixtures."""

from __future__ import annotations

import fcntl
import io
import os
import secrets
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so tests can `import fake_kaggle`

from fake_kaggle import FakeKaggle  # noqa: E402

from tests.helpers import copy_project, make  # noqa: E402  (first: it notes the environment before TensorFlow)

# Environment the kaggle client or requests would read, cleared so the developer's own
# credentials, proxies or notebook settings never leak into a test.
_CLEARED_ENV = (
    "KAGGLE_API_TOKEN",
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_CONFIG_DIR",
    "KAGGLE_API_V1_TOKEN",
    "KAGGLE_KERNEL_RUN_TYPE",
    "KAGGLE_DATA_PROXY_URL",
    "KAGGLE_IAP_TOKEN",
    "KAGGLE_COMPETITION",
    "KAGGLE_PROXY",
    "KAGGLE_API_ENVIRONMENT",
    "KAGGLE_TIMEOUT",
    "VERBOSE",
    "VERBOSE_OUTPUT",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "XDG_CONFIG_HOME",
)

# Run by `make test`, the suite would pass make's own settings on to every make it starts: those would
# print "make[1]: Entering directory" lines and inherit its flags. A user's make is top-level; so is each test's.
_MAKE_ENV = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")


_XLA_CACHE_OF_RUN = "PIPELINE_TESTS_XLA_CACHE"


def pytest_configure(config):
    for name in _MAKE_ENV:
        os.environ.pop(name, None)
    # The suite's hundreds of processes compile the same few models on the same sample shapes: JAX's
    # persistent cache compiles each once (the seed model's training stage on the sample: 22 s of CPU with
    # an empty cache, 7.5 s with its step compiled). The cache outlives the run, as pip's does: the next
    # run, in this clone or a fresh one, finds the steps compiled (the whole suite on the Zen 5: 449 s of
    # pytest with an empty cache, 355 s with the last run's; docs/testing.md). JAX keys each entry by the
    # computation, its compile options and JAX's version, so an edited model or an upgraded JAX compiles
    # afresh; the size limit evicts the least recently used entries, and makes JAX lock each entry
    # (filelock), so that concurrent processes never read one half-written. PIPELINE_TESTS_XLA_CACHE=<dir>
    # puts it elsewhere (an empty folder: a cold run). The workers inherit the controller's environment.
    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(_XLA_CACHE_OF_RUN):
        return
    cache = os.environ.get(_XLA_CACHE_OF_RUN) or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "digit-recognizer-pipeline", "xla-tests")
    )
    os.makedirs(cache, exist_ok=True)
    # backend/precision "auto" without timing candidates (~1 min a model): float32 on the model's hinted
    # backend. tests/test_tune.py tests the measured choice with injected timings.
    os.environ["PIPELINE_TUNE"] = "off"
    os.environ |= {
        _XLA_CACHE_OF_RUN: cache,
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(1 << 30),
    }


# The longest files first (by their time in one process here: state ~190 s, crash ~140 s, end to end ~120 s,
# the notebook ~110 s, ...): with a file per xdist worker, a long file that starts last leaves the other core
# idle at the end. The learning tests come early as the longest of the fast tier. (pytest-xdist would order
# the files by their number of tests instead, the one-test crash file last: the Makefile runs it with
# --no-loadscope-reorder.)
_HEAVIEST_FIRST = (
    "test_state.py",
    "test_crash.py",
    "test_end_to_end.py",
    "test_learning.py",
    "test_kernel.py",
    "test_precision.py",
    "test_ensemble.py",
    "test_speed.py",
    "test_search.py",
    "test_cv.py",
    "test_make_graph.py",
    "test_bench.py",
    "test_features_and_models.py",
    "test_distribute.py",
    "test_gpu_check.py",
    "test_layers.py",
    "test_kaggle.py",
    "test_report.py",
    "test_data_stage.py",
    "test_params.py",
    "test_augment.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order


def tiny_competition_zip(train_rows: int = 3, test_rows: int = 2) -> bytes:
    """A zip in the competition's layout (train.csv, test.csv, sample_submission.csv), a few rows each."""
    pixels = [f"pixel{i}" for i in range(784)]
    train = ["label," + ",".join(pixels)] + [f"{r % 10}," + ",".join("0" * 784) for r in range(train_rows)]
    test = [",".join(pixels)] + [",".join("0" * 784) for _ in range(test_rows)]
    sample = ["ImageId,Label"] + [f"{i + 1},0" for i in range(test_rows)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, lines in (("train.csv", train), ("test.csv", test), ("sample_submission.csv", sample)):
            z.writestr(name, "\n".join(lines) + "\n")
    return buf.getvalue()


def isolate_kaggle_env(monkeypatch, home: Path) -> None:
    """A clean environment for the kaggle client: no credentials, no proxies, HOME=home."""
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch):
    """A fake Kaggle API that the real client reaches over HTTP, with valid fake credentials.

    Sets HOME and KAGGLE_CONFIG_DIR (empty) inside tmp_path, KAGGLE_USERNAME / KAGGLE_KEY (the key
    is random per test and is what the fake accepts), KAGGLE_API_ENVIRONMENT=LOCALHOST,
    HTTP_PROXY / http_proxy pointing at the fake, and KAGGLE_TIMEOUT=2. Yields the FakeKaggle
    (knobs and recorded requests: see tests/fake_kaggle.py).
    """
    home = tmp_path / "home"
    isolate_kaggle_env(monkeypatch, home)
    config_dir = home / ".kaggle"
    config_dir.mkdir()
    fake = FakeKaggle(
        key="fake-key-" + secrets.token_hex(16),
        token="fake-token-" + secrets.token_hex(16),
        zip_bytes=tiny_competition_zip(),
    ).start()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("KAGGLE_USERNAME", fake.username)
    monkeypatch.setenv("KAGGLE_KEY", fake.key)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("HTTP_PROXY", fake.proxy_url)
    monkeypatch.setenv("http_proxy", fake.proxy_url)
    monkeypatch.setenv("KAGGLE_TIMEOUT", "2")
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def kaggle_env(fake_kaggle) -> dict:
    """os.environ as the fake_kaggle fixture left it, for running the pipeline in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return env


_MEASURED: list[str] = []


@pytest.fixture
def measured(request):
    """measured("kill points tried: 14 ..."): a line printed in the run's summary, also when the
    test passes (pytest shows a passing test's own output only with -s). The line travels in the
    test's report, so it reaches the summary from a pytest-xdist worker too."""
    return lambda line: request.node.user_properties.append(("measured", line))


def pytest_runtest_logreport(report):
    _MEASURED.extend(value for key, value in report.user_properties if key == "measured" and report.when == "call")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _MEASURED:
        terminalreporter.section("measured")
        for line in _MEASURED:
            terminalreporter.write_line(line)


# ---------------------------------------------------------------- projects trained once per run
# Many files start from the same state: the sample through `make submit EPOCHS=1` (data, features, the
# seed model, its submission), some from a cross-validated MLP beside it. Each such project is made once
# per `make test` run, by whichever worker asks first, under a lock in the run's temporary folder
# (which every pytest-xdist worker shares); every file then works in its own copy (times kept, so Make
# sees it up to date). The make commands' outputs are kept with it for the tests that read them.
SHARED = {
    # name: (the project it starts from, the make commands that make it)
    "submitted": (None, [["submit", "EPOCHS=1"]]),
    "cv": ("submitted", [["submission", "CV=1", "MODEL=mlp", "EPOCHS=2", "FOLDS=3"]]),
}


class SharedProjects:
    def __init__(self, root: Path):
        self.root = root

    def made(self, name: str) -> tuple[Path, list[str]]:
        """(the project `name`, the stdout of each make command that made it): built on first use."""
        folder, log = self.root / f"shared-{name}", self.root / f"shared-{name}.out"
        with open(self.root / f"shared-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait for the one that builds it
            if not log.is_file():
                base, commands = SHARED[name]
                shutil.rmtree(folder, ignore_errors=True)
                if base is None:
                    copy_project(folder)
                else:
                    shutil.copytree(self.made(base)[0], folder, symlinks=True)
                outputs = [make(folder, *args) for args in commands]
                log.write_text("\0".join(outputs))
        return folder, log.read_text().split("\0")

    def copy(self, name: str, dest: Path) -> tuple[Path, list[str]]:
        """A copy of the project `name` at dest (which must not exist), and the outputs that made it."""
        folder, outputs = self.made(name)
        shutil.copytree(folder, dest, symlinks=True)
        return dest, outputs


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> SharedProjects:
    """Projects made once per run and shared by every file and worker: `shared.copy("submitted", dest)`."""
    base = tmp_path_factory.getbasetemp()
    return SharedProjects(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)
