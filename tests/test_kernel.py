"""`make kernel`: what it pushes, run in a simulated Kaggle notebook; each failure as one line
against the fake Kaggle API; end to end, `make kernel` then `make submit KERNEL=1` (and `make report`
on the fetched output)."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_kaggle import FakeKaggle, notebook_log, run_notebook

from pipeline import config, csvcheck
from pipeline.kaggle import client as kaggle_client
from pipeline.kaggle import kernel
from tests.helpers import copy_project, error_line, run, run_module, venv_dir

KERNEL_ID = "tester/digit-recognizer-pipeline"
SAMPLE_TEST_ROWS = 1000


# --------------------------------------------------------------------------- helpers
def output_archive(files: dict[str, bytes]) -> bytes:
    """A pipeline-output.tar.gz as the notebook script writes it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), time.time()
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def finished_output(model: str = "mlp", rows: int = 3) -> dict[str, bytes]:
    """A notebook's output files, small: what the fake serves for a scripted COMPLETE session."""
    csv = ("ImageId,Label\n" + "".join(f"{i},{i % 10}\n" for i in range(1, rows + 1))).encode()
    name = config.submission_path(model).name
    source = {"origin": "kaggle-notebook", "from_kaggle": True, "rows": {"train": 10, "test": rows}}
    record = {"settings": {"MODEL": model, "EPOCHS": "1"}, "returncode": 0}
    return {
        "pipeline-output.tar.gz": output_archive(
            {
                "data/raw/source.json": json.dumps(source).encode(),
                f"submissions/{name}": csv,
                f"submissions/{Path(name).with_suffix('.json')}": json.dumps({"val_accuracy": 0.9}).encode(),
            }
        ),
        "pipeline-run.json": json.dumps(record).encode(),
        "submission.csv": csv,
    }


def kernel_cli(*args: str, cwd: Path, env: dict, **settings) -> subprocess.CompletedProcess:
    """python -m pipeline.kaggle.kernel ARGS with outputs under cwd/out and fast polling."""
    full = env | {"PIPELINE_OUT": str(cwd / "out"), "KERNEL_POLL": "0.05", "NO_PROXY": "", "no_proxy": ""}
    return run_module("pipeline.kaggle.kernel", *args, cwd=cwd, env=full | settings, timeout=120)


def assert_clean(proc, fake) -> None:
    for secret in (fake.key, fake.token):
        assert secret not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- without training
def test_push_sends_a_private_gpu_script_with_the_competition_and_fetches_its_output(fake_kaggle, kaggle_env, tmp_path):
    fake_kaggle.kernel_statuses = ["QUEUED", "RUNNING", "COMPLETE"]
    fake_kaggle.kernel_files = finished_output()
    fake_kaggle.kernel_log = notebook_log("[pipeline] python 3.11\n[pipeline] make exited 0 after 9 s\n")

    proc = kernel_cli("run", "MODEL=mlp", "EPOCHS=1", "PARAMS=data.val_fraction=0.2", cwd=tmp_path, env=kaggle_env)

    assert proc.returncode == 0, proc.stderr
    assert_clean(proc, fake_kaggle)
    pushed = fake_kaggle.kernel()
    assert pushed.id == KERNEL_ID and pushed.version == 1
    body = pushed.payload
    assert body["slug"] == KERNEL_ID and body["newTitle"] == kernel.TITLE
    assert (body["kernelType"], body["language"]) == ("script", "python")
    assert body["isPrivate"] is True and body["enableGpu"] is True and body["enableInternet"] is False
    assert body["machineShape"] == "NvidiaTeslaT4"  # GPU T4 x2: enable_gpu alone gets a P100
    assert body["competitionDataSources"] == [config.COMPETITION] and not body.get("datasetDataSources")
    script = pushed.script
    assert "MAKE_ARGS = ['MODEL=mlp', 'EPOCHS=1', 'PARAMS=data.val_fraction=0.2']" in script
    assert fake_kaggle.key not in script
    compile(script, "pushed.py", "exec")
    # Polled by version, one line per poll, then fetched.
    polls = fake_kaggle.calls("GetKernelSessionStatus")
    assert len(polls) == 3 and all(c.json["versionLabel"] == "v1" for c in polls)
    lines = [line for line in proc.stdout.splitlines() if "since the push" in line]
    assert [line.split(",")[0] for line in lines] == ["kernel: QUEUED", "kernel: RUNNING", "kernel: COMPLETE"]
    out = tmp_path / "out" / "kernel" / "output"
    assert (out / "submissions" / "submission-mlp.csv").read_bytes() == fake_kaggle.kernel_files["submission.csv"]
    assert (out / "data/raw/source.json").is_file() and not (out / kernel.ARCHIVE).exists()
    assert "make exited 0" in (out / "notebook.log").read_text()
    state = json.loads((tmp_path / "out/kernel/kernel.json").read_text())
    assert state["id"] == KERNEL_ID and state["version"] == 1 and state["settings"]["MODEL"] == "mlp"
    metadata = json.loads((tmp_path / "out/kernel/push/kernel-metadata.json").read_text())
    assert metadata["id"] == KERNEL_ID and metadata["code_file"] == kernel.SCRIPT


def test_no_credentials(fake_kaggle, kaggle_env, tmp_path):
    env = {k: v for k, v in kaggle_env.items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY")}

    line = error_line(kernel_cli("run", cwd=tmp_path, env=env))

    assert "no Kaggle credentials found" in line
    assert fake_kaggle.requests == []


@pytest.mark.parametrize(
    "answer, expected",
    [
        (
            {"error": "Notebook text exceeds the maximum size"},
            f"Kaggle refused the notebook {KERNEL_ID}: Notebook text exceeds the maximum size",
        ),
        (
            {"ref": "/code/x", "url": "u", "versionNumber": 1, "invalidCompetitionSources": ["digit-recognizer"]},
            "without sources it cannot attach (competition digit-recognizer), so it would run without its data: "
            f"accept the competition's rules at {kaggle_client.RULES_URL}",
        ),
        (
            {"ref": "/code/x", "url": "u", "versionNumber": 1, "invalidDatasetSources": ["someone/gone"]},
            "(dataset someone/gone)",
        ),
    ],
)
def test_a_refused_push(fake_kaggle, kaggle_env, tmp_path, answer, expected):
    fake_kaggle.save_kernel_answer = answer

    proc = kernel_cli("run", cwd=tmp_path, env=kaggle_env)

    assert expected in error_line(proc)
    assert "GetKernelSessionStatus" not in fake_kaggle.names
    assert_clean(proc, fake_kaggle)


@pytest.mark.parametrize("where", ["push", "status"])
def test_gpu_quota_used_up(fake_kaggle, kaggle_env, tmp_path, where):
    if where == "push":
        fake_kaggle.save_kernel_answer = {"error": "Maximum batch GPU session count of 2 reached"}
    else:
        fake_kaggle.kernel_statuses = ["QUEUED", "ERROR"]
        fake_kaggle.kernel_failure_message = "You've exceeded the number of hours allowed to use GPU."

    line = error_line(kernel_cli("run", cwd=tmp_path, env=kaggle_env))

    assert "your GPU quota is used up" in line and "make kernel KERNEL_ACCELERATOR=none" in line
    assert ("GPU session count" if where == "push" else "hours allowed to use GPU") in line


@pytest.mark.parametrize(
    "setting, shape, gpu, tpu",
    [
        ("none", None, False, False),
        ("NvidiaL4", "NvidiaL4", True, False),  # any other name Kaggle lists goes as it is
        ("TpuV5E8", "TpuV5E8", False, True),
    ],
)
def test_the_accelerator_is_asked_for_by_name(fake_kaggle, kaggle_env, tmp_path, setting, shape, gpu, tpu):
    fake_kaggle.kernel_statuses = ["COMPLETE"]
    fake_kaggle.kernel_files = finished_output("conv_gru")

    proc = kernel_cli("run", cwd=tmp_path, env=kaggle_env, KERNEL_ACCELERATOR=setting)

    assert proc.returncode == 0, proc.stderr
    body = fake_kaggle.kernel().payload
    assert (body.get("machineShape"), body["enableGpu"], body["enableTpu"]) == (shape, gpu, tpu)


def test_a_p100_is_refused_with_its_reason_unless_asked_for_explicitly(fake_kaggle, kaggle_env, tmp_path):
    line = error_line(kernel_cli("run", cwd=tmp_path, env=kaggle_env, KERNEL_ACCELERATOR="NvidiaTeslaP100"))

    assert line.startswith("error: KERNEL_ACCELERATOR=NvidiaTeslaP100 refused: ")
    assert "no kernels for the P100's Pascal GPU (sm_60)" in line and "KERNEL_ALLOW_P100=1" in line
    assert "SaveKernel" not in fake_kaggle.names

    fake_kaggle.kernel_statuses = ["COMPLETE"]
    fake_kaggle.kernel_files = finished_output("conv_gru")
    proc = kernel_cli("run", cwd=tmp_path, env=kaggle_env, KERNEL_ACCELERATOR="NvidiaTeslaP100", KERNEL_ALLOW_P100="1")
    assert proc.returncode == 0, proc.stderr
    assert fake_kaggle.kernel().payload["machineShape"] == "NvidiaTeslaP100"


def test_a_notebook_ending_in_error_shows_the_end_of_its_log(fake_kaggle, kaggle_env, tmp_path):
    fake_kaggle.kernel_statuses = ["RUNNING", "ERROR"]
    fake_kaggle.kernel_failure_message = "Your notebook hit an unhandled error while executing"
    fake_kaggle.kernel_files = {"pipeline-run.json": b'{"returncode": 2}', "big.bin": b"x" * 1000}
    fake_kaggle.kernel_log = notebook_log(
        "training...\nmake: *** [Makefile:120: models/mlp/metrics.json] Error 2\n"
        "error: train.mlp.epochs=0 is out of range (1-1000)\n"
        "[pipeline] make exited 2 after 12 s; output: submission.csv\n"
    )

    proc = kernel_cli("run", "MODEL=mlp", cwd=tmp_path, env=kaggle_env)

    line = error_line(proc)
    assert f"the notebook {KERNEL_ID} (version 1) ended in ERROR after" in line
    assert "unhandled error while executing" in line
    assert (
        "its log ends: make: *** [Makefile:120: models/mlp/metrics.json] Error 2 | "
        "error: train.mlp.epochs=0 is out of range (1-1000) | [pipeline] make exited 2"
    ) in line
    assert "(whole log: out/kernel/failed/notebook.log)" in line
    failed = tmp_path / "out/kernel/failed"
    assert sorted(p.name for p in failed.iterdir()) == ["notebook.log", "pipeline-run.json"]  # not big.bin
    assert "kernel: ERROR" in proc.stdout


def test_the_wait_times_out_and_resumes(fake_kaggle, kaggle_env, tmp_path):
    fake_kaggle.kernel_statuses = ["RUNNING"]

    proc = kernel_cli("run", cwd=tmp_path, env=kaggle_env, KERNEL_TIMEOUT="0.3")

    line = error_line(proc)
    assert f"the notebook {KERNEL_ID} (version 1) is still RUNNING after" in line
    assert "resume waiting with `make kernel-wait` (or `python -m pipeline.kaggle.kernel wait`)" in line
    assert proc.stdout.count("kernel: RUNNING") >= 2

    fake_kaggle.kernel_statuses = ["COMPLETE"]
    fake_kaggle.kernel().files = finished_output("conv_gru")
    proc = kernel_cli("wait", cwd=tmp_path, env=kaggle_env)

    assert proc.returncode == 0, proc.stderr
    assert fake_kaggle.names.count("SaveKernel") == 1  # not pushed again
    assert (tmp_path / "out/kernel/output/submissions/submission.csv").is_file()


@pytest.mark.parametrize("files", ["no archive", "archive without it"])
def test_an_output_without_a_submission(fake_kaggle, kaggle_env, tmp_path, files):
    fake_kaggle.kernel_statuses = ["COMPLETE"]
    fake_kaggle.kernel_files = (
        {"pipeline-run.json": b"{}"}
        if files == "no archive"
        else {kernel.ARCHIVE: output_archive({"data/raw/source.json": b"{}"})}
    )
    fake_kaggle.kernel_log = notebook_log("[pipeline] make exited 0 after 1 s\n")

    line = error_line(kernel_cli("run", "MODEL=mlp", cwd=tmp_path, env=kaggle_env))

    assert (
        f"the notebook {KERNEL_ID} (version 1) finished but its output has no submission "
        "(submissions/submission-mlp.csv); its log ends: [pipeline] make exited 0 after 1 s"
    ) in line
    assert not (tmp_path / "out/kernel/output").exists()


def test_a_status_blip_is_retried(fake_kaggle, kaggle_env, tmp_path):
    fake_kaggle.kernel_statuses = ["RUNNING", "COMPLETE"]
    fake_kaggle.kernel_files = finished_output("conv_gru")
    fake_kaggle.status["GetKernelSessionStatus"] = 503

    def heal():  # after two failed status questions (up to three in a row are tolerated)
        while len(fake_kaggle.calls("GetKernelSessionStatus")) < 2:
            time.sleep(0.02)
        fake_kaggle.status.clear()

    threading.Thread(target=heal, daemon=True).start()
    proc = kernel_cli("run", cwd=tmp_path, env=kaggle_env, KERNEL_POLL="0.3")

    assert proc.returncode == 0, proc.stderr
    assert "kernel: status unknown (Kaggle had a server error (HTTP 503)" in proc.stdout


@pytest.mark.parametrize(
    "args, env, expected",
    [
        (["run", "DATA=x.zip"], {}, "'DATA=x.zip' is not a notebook setting"),
        (["run"], {"KERNEL_POLL": "0"}, "KERNEL_POLL must be a positive number of seconds up to 600"),
        (["run"], {"KERNEL_GPU": "0"}, "KERNEL_GPU is gone: use KERNEL_ACCELERATOR=none"),
        (["run"], {"KERNEL_ACCELERATOR": "T4 x2"}, "KERNEL_ACCELERATOR='T4 x2' is not an accelerator name"),
        (["wait"], {}, "nothing to wait for: out/kernel/kernel.json is missing"),
        (["submit"], {}, "no notebook output in out/kernel/output: run `make kernel`"),
    ],
)
def test_usage_errors(fake_kaggle, kaggle_env, tmp_path, args, env, expected):
    proc = kernel_cli(*args, cwd=tmp_path, env=kaggle_env, **env)
    assert expected in error_line(proc)
    assert "SaveKernel" not in fake_kaggle.names


# --------------------------------------------------------------------------- a real notebook run
def image_python() -> str:
    """The stand-in for Kaggle's notebook image: a venv of exactly tests/kaggle_image/requirements.txt,
    which `make test` builds (tests/kaggle_image/build.py) and names in KAGGLE_IMAGE_ENV. It lacks the
    project. Where the pins do not install on the Python at hand, the build left the reason in one
    line, and these tests skip with it."""
    env = os.environ.get("KAGGLE_IMAGE_ENV")
    if env and (Path(env) / ".missing").is_file() and not (Path(env) / ".installed").is_file():
        pytest.skip(f"no Kaggle image stand-in: {(Path(env) / '.missing').read_text().strip()}")
    if not (env and (Path(env) / ".installed").is_file()):
        pytest.fail(
            "the Kaggle image stand-in is not built: run the tests with `make test` (it builds it: "
            "`make kaggle-image`), or set KAGGLE_IMAGE_ENV to a venv of tests/kaggle_image/requirements.txt"
        )
    return str(Path(env) / "bin" / "python")


def image_pins() -> dict[str, str]:
    """{package: version} of tests/kaggle_image/requirements.txt."""
    lines = (Path(__file__).parent / "kaggle_image" / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def tree_state(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*"))}


# Where 2026's pushed notebooks see the competition.
MOUNT = ("competitions", config.COMPETITION)


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory):
    """`make kernel EPOCHS=2` (the default model, conv_gru) in a copy of the project, against a fake
    Kaggle that runs the pushed script in a simulated notebook: the packages of Kaggle's image
    (tests/kaggle_image/requirements.txt, on Python 3.12 where there is one), <tmp>/kaggle as KAGGLE_ROOT
    with the committed sample mounted read-only under input/ as Kaggle mounts the competition, working/
    as the current folder, no project, no internet, no package index."""
    tmp = tmp_path_factory.mktemp("kernel")
    project = copy_project(tmp / "project")
    root = tmp / "kaggle"
    mounted = root.joinpath("input", *MOUNT)
    with zipfile.ZipFile(config.SAMPLE_ZIP) as z:
        z.extractall(mounted)
    for path in [mounted, *mounted.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)  # read-only, as Kaggle mounts it (root can still write: checked after)
    input_before = tree_state(root / "input")
    python = image_python()
    offline = "http://127.0.0.1:9"
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    notebook_env = {
        "PATH": path,
        "HOME": str(root / "home"),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
        "KAGGLE_ROOT": str(root),
        # Not Kaggle's: as in every other test, "auto" is resolved without timing candidates (a minute a model).
        "PIPELINE_TUNE": "off",
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": offline + "/",
        "HTTP_PROXY": offline,
        "HTTPS_PROXY": offline,
        "http_proxy": offline,
        "https_proxy": offline,
    }
    fake = FakeKaggle(key="fake-key-" + secrets.token_hex(16), token="fake-token-" + secrets.token_hex(16)).start()
    fake.kernel_runner = lambda k: run_notebook(k, root, [python], notebook_env, timeout=600)
    (project / "home" / ".kaggle").mkdir(parents=True)
    env = {
        "KAGGLE_USERNAME": fake.username,
        "KAGGLE_KEY": fake.key,
        "KAGGLE_CONFIG_DIR": str(project / "home" / ".kaggle"),
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HTTP_PROXY": fake.proxy_url,
        "http_proxy": fake.proxy_url,
        "NO_PROXY": "",
        "no_proxy": "",
        "KAGGLE_TIMEOUT": "30",
        "KERNEL_POLL": "1",
    }
    start = time.monotonic()
    make_kernel = ["make", f"VENV={venv_dir()}", "kernel", "MODEL=conv_gru", "EPOCHS=2"]
    proc = run(make_kernel, cwd=project, env=env, timeout=900)
    try:
        yield SimpleNamespace(
            project=project,
            root=root,
            python=python,
            fake=fake,
            env=env,
            proc=proc,
            seconds=time.monotonic() - start,
            mounted=mounted,
            input_before=input_before,
        )
    finally:
        fake.wait_for_runs()
        fake.stop()


# Where Kaggle mounts the competition (today's input/competitions/<slug>, older notebooks' input/<slug>, a
# dataset's) is found by pipeline/datasource.py, the same code in a notebook as here: test_data_stage.py tests
# every mount, and this run the notebook on today's.
@pytest.mark.slow
def test_the_pushed_script_runs_in_a_notebook_on_the_images_packages(kernel_run, measured):
    proc, fake, root = kernel_run.proc, kernel_run.fake, kernel_run.root
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pushed = fake.kernel()
    assert pushed.runs == 1 and pushed.status == "COMPLETE"
    assert pushed.payload["machineShape"] == "NvidiaTeslaT4" and pushed.payload["enableGpu"] is True
    # The interpreter it ran under is the image's, and really lacks the project.
    versions = subprocess.run(
        [
            kernel_run.python,
            "-c",
            "import sys, keras, pandas, numpy, tensorflow, jax; "
            "print('%d.%d' % sys.version_info[:2], keras.__version__, pandas.__version__, numpy.__version__, "
            "tensorflow.__version__, jax.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    # The image's packages, on its Python 3.12; where there is none, on the Python at hand (the build said
    # so in one line, and named the venv for that Python).
    python, *packages = versions.stdout.split()
    assert packages == [image_pins()[p] for p in ("keras", "pandas", "numpy", "tensorflow", "jax")], versions.stderr
    venv = Path(kernel_run.python).parents[1]
    assert python == "3.12" or venv.name.endswith(f"-py{python}"), (python, venv)
    bare = subprocess.run([kernel_run.python, "-c", "import pipeline"], cwd=root, capture_output=True, text=True)
    assert bare.returncode != 0 and "No module named 'pipeline'" in bare.stderr
    log = "".join(e["data"] for e in json.loads(pushed.log))
    assert "[pipeline] $ make -C " in log and "submission MODEL=conv_gru EPOCHS=2 PYTHON=" in log
    assert "asked for NvidiaTeslaT4, got: no GPU" in log
    # The data came from where Kaggle mounted it, and nothing was written there.
    working = root / "working"
    with tarfile.open(working / "pipeline-output.tar.gz") as tar:
        source = json.load(tar.extractfile("data/raw/source.json"))
        names = tar.getnames()
    assert source["origin"] == "kaggle-notebook" and source["path"] == str(kernel_run.mounted)
    assert tree_state(root / "input") == kernel_run.input_before
    # What the notebook's Submit button takes, and a small output: no raw CSVs, no arrays.
    rows = SAMPLE_TEST_ROWS
    assert len(csvcheck.read_submission(working / "submission.csv", n_expected=rows)) == rows
    assert sorted(p.name for p in working.iterdir()) == [
        "pipeline-output.tar.gz",
        "pipeline-run.json",
        "submission.csv",
    ]
    assert "data/processed/train.npz" in names and "models/conv_gru/model.keras" in names
    assert not [n for n in names if n.endswith((".csv",)) and not n.startswith("submissions/")]
    assert not [n for n in names if n.endswith(("arrays.npz", "test.npz"))]
    record = json.loads((working / "pipeline-run.json").read_text())
    assert record["returncode"] == 0 and record["settings"] == {"MODEL": "conv_gru", "EPOCHS": "2"}
    assert proc.stdout.strip().splitlines()[-1] == "kernel: the notebook ran on no GPU (asked for NvidiaTeslaT4)"
    measured(
        f"make kernel (the image's packages on Python {python}): {kernel_run.seconds:.0f} s; "
        f"notebook {record['seconds']} s"
    )


@pytest.mark.slow
def test_make_kernel_fetches_the_output_and_submit_kernel_uploads_that_very_file(kernel_run):
    project, fake, proc = kernel_run.project, kernel_run.fake, kernel_run.proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "kernel: RUNNING" in proc.stdout and "kernel: COMPLETE" in proc.stdout
    out = project / "kernel" / "output"
    submission = out / "submissions" / "submission.csv"  # the default model's name
    notebook_file = (kernel_run.root / "working" / "submission.csv").read_bytes()
    assert submission.read_bytes() == notebook_file
    assert json.loads((out / "data/raw/source.json").read_text())["origin"] == "kaggle-notebook"
    assert "[pipeline] make exited 0" in (out / "notebook.log").read_text()

    upload = run(["make", f"VENV={venv_dir()}", "submit", "KERNEL=1"], cwd=project, env=kernel_run.env)

    assert upload.returncode == 0, upload.stdout + upload.stderr
    assert fake.uploads == [notebook_file]
    assert "pipeline.modeling" not in upload.stdout and "pipeline.features" not in upload.stdout  # nothing rebuilt
    assert "uploaded submission.csv" in upload.stdout
    assert fake.calls("CreateSubmission")[0].json["submissionDescription"].startswith("conv_gru | val_acc ")
    assert (out / "submissions/submission.upload.json").is_file()
    assert_clean(upload, fake)


@pytest.mark.slow
def test_make_report_reads_the_fetched_output_without_retraining(kernel_run):
    assert kernel_run.proc.returncode == 0
    project = kernel_run.project

    proc = run(
        ["make", f"VENV={venv_dir()}", "report", "OUT=kernel/output", "EPOCHS=2"], cwd=project, env=kernel_run.env
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pipeline.modeling.train" not in proc.stdout and "pipeline.features" not in proc.stdout
    assert (project / "kernel/output/reports/conv_gru/index.html").is_file()
