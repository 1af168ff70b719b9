"""pipeline.kaggle.client and pipeline.kaggle.submissions against a fake Kaggle API, through the real kaggle client."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import isolate_kaggle_env, tiny_competition_zip

from pipeline import config
from pipeline.errors import PipelineError
from pipeline.kaggle import client as kaggle_client

ROOT = Path(__file__).resolve().parent.parent
ZIP_NAME = f"{config.COMPETITION}.zip"


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(PipelineError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def assert_no_secrets(message: str, fake) -> None:
    for secret in (fake.key, fake.token):
        assert secret not in message


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ZIP_NAME) if folder.exists() else []


@pytest.fixture
def csv_file(tmp_path) -> Path:
    path = tmp_path / "submission.csv"
    path.write_text("ImageId,Label\n1,7\n2,2\n")
    return path


# --------------------------------------------------------------------------- download
def test_download_fetches_the_competition_zip(fake_kaggle, tmp_path):
    fake_kaggle.zip_bytes = config.SAMPLE_ZIP.read_bytes()
    dest = tmp_path / "download"

    path = kaggle_client.download_competition(dest)

    assert path == dest / ZIP_NAME
    assert path.read_bytes() == fake_kaggle.zip_bytes
    assert leftovers(dest) == []  # no temp folder, no .kaggle-partial marker
    assert fake_kaggle.names == ["DownloadDataFiles", "blob"]
    api_call, blob = fake_kaggle.requests
    assert api_call.method == "POST"
    assert api_call.url == "http://localhost/api/v1/competitions.CompetitionApiService/DownloadDataFiles"
    assert api_call.json == {"competitionName": config.COMPETITION}
    assert api_call.headers["Authorization"].startswith("Basic ")
    assert blob.method == "GET" and "Authorization" not in blob.headers  # not sent to another host


def test_repeated_download_downloads_nothing(fake_kaggle, tmp_path, monkeypatch):
    dest = tmp_path / "download"
    first = kaggle_client.download_competition(dest)
    before = first.stat().st_mtime_ns
    fake_kaggle.requests.clear()
    monkeypatch.delenv("KAGGLE_KEY")  # not even credentials are needed

    assert kaggle_client.download_competition(dest) == first
    assert fake_kaggle.requests == []
    assert first.stat().st_mtime_ns == before


def test_force_downloads_again(fake_kaggle, tmp_path):
    dest = tmp_path / "download"
    kaggle_client.download_competition(dest)
    fake_kaggle.zip_bytes = tiny_competition_zip(train_rows=7)

    path = kaggle_client.download_competition(dest, force=True)

    assert path.read_bytes() == fake_kaggle.zip_bytes
    assert fake_kaggle.names.count("blob") == 2


def test_unreadable_zip_at_the_path_is_downloaded_again(fake_kaggle, tmp_path):
    dest = tmp_path / "download"
    dest.mkdir()
    (dest / ZIP_NAME).write_bytes(fake_kaggle.zip_bytes[:100])  # an interrupted copy, say

    path = kaggle_client.download_competition(dest)

    assert path.read_bytes() == fake_kaggle.zip_bytes


def test_zip_with_unexpected_members_is_returned(fake_kaggle, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not the competition layout")
    fake_kaggle.zip_bytes = buf.getvalue()

    path = kaggle_client.download_competition(tmp_path / "download")

    assert zipfile.ZipFile(path).namelist() == ["readme.txt"]  # judging contents is the data stage's job


def test_a_file_that_is_not_a_zip_is_refused_and_not_kept(fake_kaggle, tmp_path):
    fake_kaggle.zip_bytes = b"<html>maintenance</html>"
    dest = tmp_path / "download"

    message = error_of(kaggle_client.download_competition, dest)

    assert "not a readable zip" in message
    assert not (dest / ZIP_NAME).exists() and leftovers(dest) == []


def test_a_zip_with_a_corrupt_member_is_refused(fake_kaggle, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("train.csv", "label,pixel0\n" + "1,0\n" * 50)
    data = bytearray(buf.getvalue())
    data[data.index(b"1,0\n") + 1] ^= 0xFF  # flip a byte of the stored data: the CRC no longer matches
    fake_kaggle.zip_bytes = bytes(data)
    dest = tmp_path / "download"

    message = error_of(kaggle_client.download_competition, dest)

    assert "corrupt member train.csv" in message
    assert not (dest / ZIP_NAME).exists()


def test_failed_forced_download_keeps_the_old_zip(fake_kaggle, tmp_path):
    dest = tmp_path / "download"
    good = kaggle_client.download_competition(dest).read_bytes()
    fake_kaggle.status["blob"] = 500

    message = error_of(kaggle_client.download_competition, dest, force=True)

    assert "server error (HTTP 500)" in message
    assert (dest / ZIP_NAME).read_bytes() == good and leftovers(dest) == []


# --------------------------------------------------------------------------- submit
def test_submit_uploads_the_file_with_its_message(fake_kaggle, csv_file):
    result = kaggle_client.submit(csv_file, "conv_gru, seed 1")

    assert result == {"ref": 1001, "remaining": 4}
    assert fake_kaggle.names == ["StartSubmissionUpload", "upload", "CreateSubmission", "GetSubmissionLimits"]
    start = fake_kaggle.calls("StartSubmissionUpload")[0].json
    assert start["competitionName"] == config.COMPETITION
    assert start["fileName"] == "submission.csv" and start["contentLength"] == csv_file.stat().st_size
    assert fake_kaggle.uploads == [csv_file.read_bytes()]
    create = fake_kaggle.calls("CreateSubmission")[0].json
    assert create == {
        "competitionName": config.COMPETITION,
        "blobFileTokens": "fake-blob-token-1",
        "submissionDescription": "conv_gru, seed 1",
    }


def test_submit_reports_a_failed_upload(fake_kaggle, csv_file):
    fake_kaggle.upload_status = 500  # competition_submit returns "Could not submit to competition", ref 0

    message = error_of(kaggle_client.submit, csv_file, "m")

    assert "uploading submission.csv to Kaggle failed" in message and "nothing was submitted" in message
    assert fake_kaggle.calls("CreateSubmission") == []
    assert_no_secrets(message, fake_kaggle)


def test_submit_reports_a_refusal(fake_kaggle, csv_file):
    fake_kaggle.create_submission_answer = {"message": "You have reached today's submission limit", "ref": 0}

    message = error_of(kaggle_client.submit, csv_file, "m")

    assert message == "Kaggle did not accept the submission: You have reached today's submission limit"


def test_submit_remaining_is_none_when_limits_fail(fake_kaggle, csv_file):
    fake_kaggle.status["GetSubmissionLimits"] = 500

    assert kaggle_client.submit(csv_file, "m") == {"ref": 1001, "remaining": None}


def test_submit_needs_the_file(fake_kaggle, tmp_path):
    message = error_of(kaggle_client.submit, tmp_path / "missing.csv", "m")

    assert "missing.csv does not exist" in message and fake_kaggle.requests == []


# --------------------------------------------------------------------------- history
def test_submissions_newest_first(fake_kaggle):
    fake_kaggle.add_submission(2, "2024-05-03T08:00:00.123Z", "second", public_score="0.98100")
    fake_kaggle.add_submission(1, "2024-05-01T08:00:00Z", "first", public_score="0.97000")
    fake_kaggle.add_submission(3, "2024-05-04T09:30:00.5Z", "third", status="PENDING", public_score=None)

    rows = kaggle_client.submissions()

    assert rows == [
        {"ref": 3, "date": "2024-05-04 09:30:00", "description": "third", "status": "pending", "public_score": None},
        {
            "ref": 2,
            "date": "2024-05-03 08:00:00",
            "description": "second",
            "status": "complete",
            "public_score": "0.98100",
        },
        {
            "ref": 1,
            "date": "2024-05-01 08:00:00",
            "description": "first",
            "status": "complete",
            "public_score": "0.97000",
        },
    ]
    request = fake_kaggle.calls("ListSubmissions")[0].json
    assert request["competitionName"] == config.COMPETITION and request["page"] == 1


def test_submissions_reads_every_page(fake_kaggle, monkeypatch):
    monkeypatch.setattr(kaggle_client, "PAGE_SIZE", 2)
    for ref in range(1, 6):
        fake_kaggle.add_submission(ref, f"2024-05-0{ref}T00:00:00Z", f"s{ref}")

    assert [r["ref"] for r in kaggle_client.submissions()] == [5, 4, 3, 2, 1]
    assert [c.json["page"] for c in fake_kaggle.calls("ListSubmissions")] == [1, 2, 3]


def test_limits_follow_submissions(fake_kaggle, csv_file):
    fake_kaggle.limits.update(numToday=4, numAllowedNow=1)

    assert kaggle_client.submit(csv_file, "last one today")["remaining"] == 0
    assert [r["description"] for r in kaggle_client.submissions()] == ["last one today"]


def run_submissions(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.kaggle.submissions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_history_cli_prints_a_table(fake_kaggle, kaggle_env):
    fake_kaggle.add_submission(1, "2024-05-01T08:00:00Z", "seed model", public_score="0.97000")
    fake_kaggle.add_submission(2, "2024-05-02T09:15:00Z", "conv_gru, 30 epochs", public_score="0.99214")

    result = run_submissions(kaggle_env)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["date", "(UTC)", "status", "public", "score", "message"]
    assert lines[1].split() == ["2024-05-02", "09:15:00", "complete", "0.99214", "conv_gru,", "30", "epochs"]
    assert lines[2].split() == ["2024-05-01", "08:00:00", "complete", "0.97000", "seed", "model"]
    assert lines[0].index("message") == lines[1].index("conv_gru") == lines[2].index("seed")  # aligned


def test_history_cli_with_no_submissions(fake_kaggle, kaggle_env):
    result = run_submissions(kaggle_env)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"no submissions to {config.COMPETITION} yet\n"


def test_history_cli_error_is_one_line(fake_kaggle, kaggle_env):
    fake_kaggle.status["*"] = 401

    result = run_submissions(kaggle_env)

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: Kaggle rejected your credentials (HTTP 401)")
    assert result.stderr.count("\n") == 1
    assert_no_secrets(result.stderr, fake_kaggle)


# --------------------------------------------------------------------------- failures
def test_wrong_key_is_401(fake_kaggle, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-0123456789")

    message = error_of(kaggle_client.download_competition, tmp_path / "download")

    assert "HTTP 401" in message and "https://www.kaggle.com/settings" in message
    assert "wrong-key-0123456789" not in message


@pytest.mark.parametrize("call", ["download", "submit", "submissions"])
def test_rules_not_accepted_is_403(fake_kaggle, tmp_path, csv_file, call):
    fake_kaggle.status["*"] = 403
    calls = {
        "download": lambda: kaggle_client.download_competition(tmp_path / "download"),
        "submit": lambda: kaggle_client.submit(csv_file, "m"),
        "submissions": kaggle_client.submissions,
    }

    message = error_of(calls[call])

    assert "HTTP 403" in message and "https://www.kaggle.com/c/digit-recognizer/rules" in message
    assert_no_secrets(message, fake_kaggle)


def test_unknown_competition_is_404(fake_kaggle, tmp_path):
    fake_kaggle.competitions = ()

    message = error_of(kaggle_client.download_competition, tmp_path / "download")

    assert "HTTP 404" in message and "'digit-recognizer'" in message


def test_server_message_is_scrubbed_of_credentials(fake_kaggle):
    fake_kaggle.status["ListSubmissions"] = 400
    fake_kaggle.messages[400] = f"bad request from {fake_kaggle.username}:{fake_kaggle.key}"

    message = error_of(kaggle_client.submissions)

    assert message.startswith("Kaggle answered HTTP 400") and "tester:***" in message
    assert_no_secrets(message, fake_kaggle)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused(fake_kaggle, tmp_path, monkeypatch):
    proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    started = time.monotonic()

    message = error_of(kaggle_client.download_competition, tmp_path / "download")

    assert "cannot reach Kaggle" in message and "connection refused" in message
    assert time.monotonic() - started < 10
    assert leftovers(tmp_path / "download") == []


@pytest.mark.parametrize("call", ["download", "submit", "submissions"])
def test_a_server_that_never_answers_times_out(fake_kaggle, tmp_path, csv_file, call):
    fake_kaggle.hang.add("*")
    calls = {
        "download": lambda: kaggle_client.download_competition(tmp_path / "download"),
        "submit": lambda: kaggle_client.submit(csv_file, "m"),
        "submissions": kaggle_client.submissions,
    }
    started = time.monotonic()

    message = error_of(calls[call])

    assert "did not answer within 2 s" in message and "KAGGLE_TIMEOUT" in message
    assert time.monotonic() - started < 6
    assert fake_kaggle.requests  # it did get through to the server


def test_an_upload_that_never_finishes_hits_the_deadline(fake_kaggle, csv_file, monkeypatch):
    monkeypatch.setenv("KAGGLE_TIMEOUT", "1")
    fake_kaggle.hang.add("upload")  # the client's upload session would retry this 10 times
    started = time.monotonic()

    message = error_of(kaggle_client.submit, csv_file, "m")

    assert "did not finish submitting" in message and "within 3 s" in message
    assert time.monotonic() - started < 6
    # The abandoned worker's upload may still get through once the server answers again, but having
    # told the user it failed, it must not go on to create the submission.
    fake_kaggle.release_hung()
    deadline = time.monotonic() + 10
    while not fake_kaggle.uploads and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert fake_kaggle.calls("CreateSubmission") == []


def test_bad_timeout_setting(fake_kaggle, monkeypatch):
    monkeypatch.setenv("KAGGLE_TIMEOUT", "soon")

    assert "KAGGLE_TIMEOUT must be a positive number" in error_of(kaggle_client.submissions)


# --------------------------------------------------------------------------- credentials
def test_no_credentials(fake_kaggle, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")

    message = error_of(kaggle_client.download_competition, tmp_path / "download")

    assert message == kaggle_client.missing_credentials_message()
    assert fake_kaggle.requests == []
    assert not sys.stdin.closed


def test_missing_credentials_message_names_the_mechanisms():
    message = kaggle_client.missing_credentials_message()

    assert "\n" not in message
    for part in (
        "KAGGLE_API_TOKEN",
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
        "kaggle.json",
        "KAGGLE_CONFIG_DIR",
        "access_token",
        "https://www.kaggle.com/settings",
        "Create New Token",
    ):
        assert part in message


def test_access_token_authenticates(fake_kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", fake_kaggle.token)
    fake_kaggle.add_submission(1, "2024-05-01T08:00:00Z", "by token")

    assert [r["description"] for r in kaggle_client.submissions()] == ["by token"]
    assert fake_kaggle.calls("IntrospectToken")[-1].json == {"token": fake_kaggle.token}
    assert fake_kaggle.calls("ListSubmissions")[0].headers["Authorization"] == f"Bearer {fake_kaggle.token}"


def test_invalid_access_token(fake_kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "expired-token-0123456789")

    message = error_of(kaggle_client.submissions)

    assert "access token" in message and "expired-token-0123456789" not in message
    assert fake_kaggle.calls("ListSubmissions") == []
    assert not sys.stdin.closed


def test_client_chatter_stays_off_stdout(fake_kaggle, tmp_path, monkeypatch, capsys, csv_file):
    monkeypatch.setenv("VERBOSE", "1")  # would make the client print requests, Authorization included
    (Path(tmp_path) / "home" / ".kaggle" / "kaggle.json").write_text("{}")  # world-readable: a warning

    kaggle_client.download_competition(tmp_path / "download")
    kaggle_client.submit(csv_file, "m")
    kaggle_client.submissions()

    out, err = capsys.readouterr()
    assert out == ""
    assert_no_secrets(err, fake_kaggle)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


KEY_JSON = json.dumps({"username": "someone", "key": "0123456789abcdef"})
MECHANISMS = {
    "nothing": (False, lambda home, mp: None),
    "kaggle.json in KAGGLE_CONFIG_DIR": (
        True,
        lambda home, mp: (
            _write(home / "cfg" / "kaggle.json", KEY_JSON),
            mp.setenv("KAGGLE_CONFIG_DIR", str(home / "cfg")),
        ),
    ),
    "kaggle.json outside KAGGLE_CONFIG_DIR": (
        False,
        lambda home, mp: (
            _write(home / ".kaggle" / "kaggle.json", KEY_JSON),
            mp.setenv("KAGGLE_CONFIG_DIR", str(home / "cfg")),
        ),
    ),
    "~/.kaggle/kaggle.json": (True, lambda home, mp: _write(home / ".kaggle" / "kaggle.json", KEY_JSON)),
    "~/.config/kaggle/kaggle.json": (
        True,
        lambda home, mp: _write(home / ".config" / "kaggle" / "kaggle.json", KEY_JSON),
    ),
    "$XDG_CONFIG_HOME/kaggle/kaggle.json": (
        True,
        lambda home, mp: (
            _write(home / "xdg" / "kaggle" / "kaggle.json", KEY_JSON),
            mp.setenv("XDG_CONFIG_HOME", str(home / "xdg")),
        ),
    ),
    "kaggle.json without a key": (
        False,
        lambda home, mp: _write(home / ".kaggle" / "kaggle.json", '{"username": "someone"}'),
    ),
    "KAGGLE_USERNAME and KAGGLE_KEY": (
        True,
        lambda home, mp: (mp.setenv("KAGGLE_USERNAME", "someone"), mp.setenv("KAGGLE_KEY", "0123456789abcdef")),
    ),
    "KAGGLE_USERNAME alone": (False, lambda home, mp: mp.setenv("KAGGLE_USERNAME", "someone")),
    "KAGGLE_KEY with username in kaggle.json": (
        True,
        lambda home, mp: (
            _write(home / ".kaggle" / "kaggle.json", '{"username": "someone"}'),
            mp.setenv("KAGGLE_KEY", "k3y-k3y"),
        ),
    ),
    "KAGGLE_API_TOKEN": (True, lambda home, mp: mp.setenv("KAGGLE_API_TOKEN", "KGAT_0123456789")),
    "KAGGLE_API_TOKEN as a file": (
        True,
        lambda home, mp: (
            _write(home / "token.txt", "KGAT_0123456789\n"),
            mp.setenv("KAGGLE_API_TOKEN", str(home / "token.txt")),
        ),
    ),
    "~/.kaggle/access_token": (True, lambda home, mp: _write(home / ".kaggle" / "access_token", "KGAT_0123\n")),
    "~/.kaggle/access_token.txt": (True, lambda home, mp: _write(home / ".kaggle" / "access_token.txt", "KGAT_1")),
    "empty ~/.kaggle/access_token": (False, lambda home, mp: _write(home / ".kaggle" / "access_token", "\n")),
    "~/.kaggle/credentials.json (kaggle auth login)": (
        True,
        lambda home, mp: _write(
            home / ".kaggle" / "credentials.json", json.dumps({"refresh_token": "r3fresh", "username": "someone"})
        ),
    ),
    "KAGGLE_API_V1_TOKEN in a Kaggle notebook": (
        True,
        lambda home, mp: (
            _write(home / "nb-token", "KGAT_nb"),
            mp.setenv("KAGGLE_API_V1_TOKEN", str(home / "nb-token")),
            mp.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive"),
            mp.setenv("KAGGLE_DATA_PROXY_URL", "http://proxy"),
        ),
    ),
    "KAGGLE_API_V1_TOKEN outside a notebook": (
        False,
        lambda home, mp: (
            _write(home / "nb-token", "KGAT_nb"),
            mp.setenv("KAGGLE_API_V1_TOKEN", str(home / "nb-token")),
        ),
    ),
}


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_credentials_available(mechanism, tmp_path, monkeypatch):
    expected, configure = MECHANISMS[mechanism]
    home = tmp_path / "home"
    isolate_kaggle_env(monkeypatch, home)
    configure(home, monkeypatch)

    assert kaggle_client.credentials_available() is expected


def test_credentials_available_does_not_import_kaggle(tmp_path, monkeypatch):
    isolate_kaggle_env(monkeypatch, tmp_path / "home")
    code = (
        "import sys; from pipeline.kaggle import client as k; k.credentials_available(); "
        "k.missing_credentials_message(); print('kaggle' in sys.modules)"
    )

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert result.stdout == "False\n", result.stderr
    assert list((tmp_path / "home").iterdir()) == []  # no config folder created either
