"""A thin wrapper over the official `kaggle` client (pinned to 2.2.5): download, submit, history.

Everything here was checked against the installed kaggle 2.2.5 / kagglesdk source. What the
wrapper adds to the client, and why:

* Lazy import. `import kaggle` runs `KaggleApi().authenticate()` at import time (kaggle/__init__.py),
  which prints a help text to stdout when no credentials are set, may call the network to check an
  access token, and creates a config folder (~/.kaggle or ~/.config/kaggle). So `kaggle` is only
  imported inside the functions that talk to Kaggle, and `credentials_available()` never imports it.
* Fresh configuration per call. `KaggleApi` reads `KAGGLE_CONFIG_DIR` and `KAGGLE_API_ENVIRONMENT`
  into class attributes when the module is first imported; each call here builds a new `KaggleApi`
  and recomputes those attributes from the current environment, so a long-lived process (or a test
  run) that changes them is honoured.
* One-line errors. Every failure becomes a `PipelineError` that says what to do. `authenticate()`
  reports missing credentials with `exit(1)` (a `SystemExit`, which `except Exception` does not
  catch, and which also closes `sys.stdin`); `competition_submit` does not raise when the upload
  fails but returns message "Could not submit to competition" with ref 0.
* Bounded waits. The client sets no timeout on its HTTP requests, so a server that accepts the
  connection and never answers would hang it forever. While one of our calls runs, every request
  without a timeout gets one: `KAGGLE_TIMEOUT` seconds (default 60) for connecting and for each
  read. API calls (submit, history) also run under an overall deadline of 3 x KAGGLE_TIMEOUT,
  because the upload step retries a stalled PUT up to 10 times on its own; the data download has
  no overall deadline (a big file on a slow link may take long) but every read is bounded.
* Quiet and scrubbed. The client's stdout chatter (progress, warnings, help texts) is swallowed;
  keys and tokens are removed from every message this module produces.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from pipeline.config import COMPETITION
from pipeline.errors import PipelineError

TOKEN_URL = "https://www.kaggle.com/settings"
RULES_URL = f"https://www.kaggle.com/c/{COMPETITION}/rules"
DEFAULT_TIMEOUT_S = 60.0
# submit() and submissions() are abandoned after this many KAGGLE_TIMEOUTs in all.
OPERATION_DEADLINE_FACTOR = 3
# download_file() retries a broken transfer this many times (its default, 5, sleeps up to ~62 s).
DOWNLOAD_RETRIES = 2
# ListSubmissions is paged; read at most this many pages of this size.
PAGE_SIZE = 100
MAX_PAGES = 20

# What kaggle 2.2.5 answers when the upload of a submission file fails
# (KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE); kept here to avoid importing kaggle.
_UPLOAD_FAILED_MESSAGE = "Could not submit to competition"


# --------------------------------------------------------------------------- credentials
def _home_path(*parts: str) -> Path:
    return Path(os.path.expanduser("~")).joinpath(*parts)


def _config_dir() -> Path:
    """Where kaggle 2.2.5 looks for kaggle.json (the class body of KaggleApi, evaluated now)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured)
    legacy = _home_path(".kaggle")
    if sys.platform.startswith("linux") and not legacy.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(_home_path(".config"))
        return Path(xdg) / "kaggle"
    return legacy


def _read_text(path) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _is_file(value: str) -> bool:
    try:
        return Path(value).exists()
    except (OSError, ValueError):  # a token too long, or with a NUL, to be a path
        return False


def _read_json(path) -> dict:
    text = _read_text(path)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _access_token() -> str | None:
    """The access token kaggle 2.2.5 would use (kagglesdk.kaggle_env.get_access_token_from_env)."""
    # Inside a Kaggle notebook: a token file named by KAGGLE_API_V1_TOKEN.
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") is not None and os.environ.get("KAGGLE_DATA_PROXY_URL"):
        path = os.environ.get("KAGGLE_API_V1_TOKEN")
        token = _read_text(path) if path else None
        if token:
            return token
    # KAGGLE_API_TOKEN holds the token itself, or the path of a file holding it.
    value = os.environ.get("KAGGLE_API_TOKEN")
    if value:
        return _read_text(value) if _is_file(value) else value
    # The token files `kaggle` reads (always under ~/.kaggle, whatever KAGGLE_CONFIG_DIR says).
    for name in ("access_token", "access_token.txt"):
        token = _read_text(_home_path(".kaggle", name))
        if token:
            return token
    return None


def _legacy_key() -> tuple[str, str] | None:
    """username and key from kaggle.json, overridden by KAGGLE_USERNAME / KAGGLE_KEY."""
    config = _read_json(_config_dir() / "kaggle.json")
    username = os.environ.get("KAGGLE_USERNAME", config.get("username"))
    key = os.environ.get("KAGGLE_KEY", config.get("key"))
    if username and key:
        return str(username), str(key)
    return None


def _oauth_credentials() -> dict:
    """What `kaggle auth login` saved (kagglesdk.kaggle_creds.KaggleCredentials)."""
    return _read_json(_home_path(".kaggle", "credentials.json"))


def credentials_available() -> bool:
    """True when any credential mechanism of kaggle 2.2.5 is configured. Does not import kaggle.

    In the client's order: an access token (KAGGLE_API_TOKEN, as a value or a file path;
    ~/.kaggle/access_token or access_token.txt; in a Kaggle notebook the file named by
    KAGGLE_API_V1_TOKEN), a legacy API key (kaggle.json in $KAGGLE_CONFIG_DIR, ~/.kaggle or
    ~/.config/kaggle, or KAGGLE_USERNAME + KAGGLE_KEY), or `kaggle auth login`'s
    ~/.kaggle/credentials.json. Whether Kaggle accepts them is only known by asking it.
    """
    return bool(_access_token() or _legacy_key() or _oauth_credentials().get("refresh_token"))


def missing_credentials_message() -> str:
    return (
        "no Kaggle credentials found: set KAGGLE_API_TOKEN (or save the token in ~/.kaggle/access_token), "
        "or set KAGGLE_USERNAME and KAGGLE_KEY (or put kaggle.json in ~/.kaggle or $KAGGLE_CONFIG_DIR); "
        f"get a token at {TOKEN_URL} -> API -> Create New Token"
    )


def _secrets() -> list[str]:
    """Every key and token this process could send, to be scrubbed from messages."""
    token_env = os.environ.get("KAGGLE_API_TOKEN")
    found = [
        _access_token(),
        os.environ.get("KAGGLE_KEY"),
        os.environ.get("KAGGLE_IAP_TOKEN"),
        None if token_env and _is_file(token_env) else token_env,
        _read_json(_config_dir() / "kaggle.json").get("key"),
    ]
    oauth = _oauth_credentials()
    found += [oauth.get("refresh_token"), oauth.get("access_token")]
    legacy = _legacy_key()
    if legacy:
        found.append(base64.b64encode(f"{legacy[0]}:{legacy[1]}".encode()).decode())  # Basic auth header
    return sorted({str(s) for s in found if s and len(str(s)) >= 4}, key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    """One line, with every secret replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- timeouts
class _Call:
    """What the HTTP layer needs to know about the call in progress (see _install_default_timeout)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.abandoned = threading.Event()  # set once the caller has given up on this call


_current_call: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("kaggle_call", default=None)
_patch_lock = threading.Lock()


def _install_default_timeout() -> None:
    """Give requests a default timeout, only inside our calls (where _current_call is set).

    The client sends through several requests.Sessions it builds itself (the API session, the
    upload's own session, download_file's retries), none with a timeout; every one of them ends
    in HTTPAdapter.send, so that is where the default goes. A call the caller has abandoned
    (deadline passed, Ctrl-C) sends nothing more: no CreateSubmission after we reported failure.
    Outside our calls (the variable is unset, as it is in every other thread) requests behaves
    exactly as before.
    """
    import requests
    from requests.adapters import HTTPAdapter

    with _patch_lock:
        if getattr(HTTPAdapter.send, "_pipeline_default_timeout", False):
            return
        original = HTTPAdapter.send

        @functools.wraps(original)
        def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
            call = _current_call.get()
            if call is not None:
                if call.abandoned.is_set():
                    raise requests.exceptions.ConnectionError("abandoned: the caller gave up on this Kaggle call")
                if timeout is None:
                    timeout = call.timeout
            return original(self, request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)

        send._pipeline_default_timeout = True
        HTTPAdapter.send = send


def seconds_setting(name: str, default: float, maximum: float | None = None) -> float:
    """A number of seconds from the environment variable `name` (KAGGLE_TIMEOUT, KERNEL_POLL, ...):
    `default` when unset or empty; anything but a positive finite number (at most `maximum`) is refused."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf") or (maximum is not None and value > maximum):
        bound = f" up to {maximum:g}" if maximum is not None else ""
        raise PipelineError(f"{name} must be a positive number of seconds{bound}, not {raw!r}")
    return value


def _timeout() -> float:
    return seconds_setting("KAGGLE_TIMEOUT", DEFAULT_TIMEOUT_S)


# --------------------------------------------------------------------------- running a call
@contextlib.contextmanager
def _quiet_client():
    """Swallow the client's stdout chatter, and keep exit() (which closes sys.stdin) off our stdin."""
    stdin = sys.stdin
    sys.stdin = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdin = stdin


def _run(operation, what: str, deadline: float | None = None):
    """Run operation() against Kaggle in a worker thread; return its result or raise PipelineError.

    Inside the worker every HTTP request is bounded by KAGGLE_TIMEOUT; `deadline` (seconds, None
    for none) bounds the whole operation. A worker that outlives its deadline (or a Ctrl-C) is
    marked abandoned, so it starts no further request (urllib3 may still retry the one in flight
    until it gives up); it is a daemon thread and does not keep the process alive.
    """
    timeout = _timeout()
    secrets = _secrets()
    _install_default_timeout()
    call = _Call(timeout)
    box: dict = {}

    def work():
        _current_call.set(call)  # a new thread starts with an empty context: this is local to it
        try:
            box["result"] = operation()
        except BaseException as exc:  # SystemExit included: it must not vanish with the thread
            box["error"] = exc

    with _quiet_client():
        worker = threading.Thread(target=work, name="kaggle-call", daemon=True)
        worker.start()
        end = None if deadline is None else time.monotonic() + deadline
        try:
            while worker.is_alive():
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise PipelineError(
                        f"Kaggle did not finish {what} within {deadline:g} s: check your network connection, "
                        "or raise KAGGLE_TIMEOUT (seconds) and rerun"
                    )
                worker.join(0.2 if left is None else min(0.2, left))
        finally:
            if worker.is_alive():
                call.abandoned.set()
    if "error" not in box:
        return box.get("result")
    exc = box["error"]
    if isinstance(exc, PipelineError):
        raise PipelineError(_scrub(str(exc), secrets)) from None
    if isinstance(exc, KeyboardInterrupt):
        raise KeyboardInterrupt
    raise PipelineError(_scrub(_explain(exc, what, timeout), secrets)) from None


def _exception_chain(exc):
    """exc, its causes and contexts, and the exceptions requests/urllib3 wrap in args and .reason."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]


def _server_message(response) -> str:
    try:
        message = response.json().get("message")
    except Exception:
        return ""
    return f": {message}" if isinstance(message, str) and message else ""


def _explain(exc: BaseException, what: str, timeout: float) -> str:
    """The one-line, actionable message for an exception raised by the kaggle client."""
    import requests
    import urllib3.exceptions

    chain = list(_exception_chain(exc))
    http = next((e for e in chain if isinstance(e, requests.HTTPError) and e.response is not None), None)
    if http is not None:
        code = http.response.status_code
        if code == 401:
            return (
                "Kaggle rejected your credentials (HTTP 401): the key or token is wrong, expired or revoked; "
                f"create a new one at {TOKEN_URL} -> API -> Create New Token"
            )
        if code == 403:
            return (
                f"Kaggle refused access to {COMPETITION} (HTTP 403): accept the competition's rules at "
                f"{RULES_URL} while logged in as the account whose credentials you use, then rerun"
            )
        if code == 404:
            return (
                f"Kaggle has no competition named {COMPETITION!r} (HTTP 404): check COMPETITION in pipeline/config.py"
            )
        if code == 429:
            return f"Kaggle is rate-limiting this account (HTTP 429) while {what}: wait a few minutes and rerun"
        if code >= 500:
            return f"Kaggle had a server error (HTTP {code}) while {what}: try again later"
        return f"Kaggle answered HTTP {code} while {what}{_server_message(http.response)}"
    # Refused and unresolved first: urllib3's NewConnectionError is also a ConnectTimeoutError.
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return (
            f"cannot reach Kaggle while {what} (connection refused): check your network connection "
            "and any HTTP_PROXY / HTTPS_PROXY setting"
        )
    if any(isinstance(e, socket.gaierror) for e in chain):
        return f"cannot reach Kaggle while {what} (host name not resolved): check your network connection and DNS"
    timeouts = (requests.Timeout, urllib3.exceptions.TimeoutError, socket.timeout, TimeoutError)
    if any(isinstance(e, timeouts) for e in chain):
        return (
            f"Kaggle did not answer within {timeout:g} s while {what}: check your network connection, "
            "or raise KAGGLE_TIMEOUT (seconds) and rerun"
        )
    if any(
        isinstance(
            e, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)
        )
        for e in chain
    ):
        return f"the connection to Kaggle broke while {what}: check your network connection and rerun"
    if isinstance(exc, ValueError) and "does not match expected size" in str(exc):
        return f"the download from Kaggle was cut short while {what}: rerun to download again"
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot write {exc.filename} while {what}: {exc.strerror}"
    return f"{what} failed: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- the client
def _api():
    """A freshly configured, authenticated KaggleApi (runs inside _run's worker)."""
    if not credentials_available():
        raise PipelineError(missing_credentials_message())
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    # Class attributes frozen at the first import; recompute them from the environment now.
    api.config_dir = str(_config_dir())
    api.config = os.path.join(api.config_dir, api.config_file)
    # "--local" (KAGGLE_API_ENVIRONMENT=LOCALHOST) is the one environment switch the class reads;
    # its "--verbose" (VERBOSE=1) is left out on purpose: it prints the Authorization header.
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
    try:
        api.authenticate()
    except SystemExit:
        # Credentials exist (checked above) but none was usable: in 2.2.5 that is an access token
        # the server calls inactive (IntrospectToken), which the client then silently skips, or a
        # `kaggle auth login` whose refresh the server refused (the client deletes that file).
        raise PipelineError(
            "Kaggle did not accept your access token (invalid or expired): create a new one at "
            f"{TOKEN_URL} -> API -> Create New Token, or run `kaggle auth login` again"
        ) from None
    return api


def _zip_problem(path: Path) -> str | None:
    """None when `path` is a readable zip archive (every member's CRC checks), else why not."""
    if not zipfile.is_zipfile(path):
        return "not a zip archive"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as exc:
        return f"unreadable zip: {exc}"
    return f"corrupt member {bad}" if bad else None


def download_competition(dest_dir: Path, force: bool = False) -> Path:
    """Download the competition's data zip into dest_dir and return its path.

    A readable zip already at that path is kept and nothing is downloaded, unless `force`.
    The file is downloaded into a temporary folder inside dest_dir and renamed into place only once
    complete and readable as a zip, so an interrupted or failed download never leaves a partial
    file at the returned path (and an old, good zip survives a failed forced download).
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / f"{COMPETITION}.zip"
    if not force and target.is_file() and _zip_problem(target) is None:
        return target
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{COMPETITION}-download-"))
    except OSError as exc:
        raise PipelineError(f"cannot write to {dest_dir}: {exc.strerror}") from None
    try:
        partial = staging / target.name
        timeout = _timeout()

        def download():
            api = _api()
            from kagglesdk.competitions.types.competition_api_service import ApiDownloadDataFilesRequest

            # What KaggleApi.competition_download_files does, minus its choice of file name and with
            # download_file's retries and per-read timeout (300 s) brought down to ours.
            with api.build_kaggle_client() as kaggle:
                request = ApiDownloadDataFilesRequest()
                request.competition_name = COMPETITION
                # DownloadDataFiles answers with a redirect to the blob; requests follows it and
                # hands back the streamed blob response.
                response = kaggle.competitions.competition_api_client.download_data_files(request)
                api.download_file(
                    response,
                    str(partial),
                    kaggle.http_client(),
                    quiet=True,
                    resume=False,
                    max_retries=DOWNLOAD_RETRIES,
                    timeout=timeout,
                )

        _run(download, f"downloading the {COMPETITION} data")
        problem = _zip_problem(partial)
        if problem:
            raise PipelineError(
                f"Kaggle served a file for {COMPETITION} that is not a readable zip ({problem}); "
                "nothing was kept: rerun to download it again"
            )
        os.replace(partial, target)
    except OSError as exc:
        raise PipelineError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def submit(csv_path: Path, message: str) -> dict:
    """Upload csv_path to the competition; return {"ref": submission ref, "remaining": int | None}.

    `remaining` is how many more submissions Kaggle allows today (GetSubmissionLimits'
    numAllowedNow, asked after submitting), or None when that question fails.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise PipelineError(f"{csv_path} does not exist: make the submission file first")
    what = f"submitting {csv_path.name} to {COMPETITION}"

    def work():
        api = _api()
        out = sys.stdout  # _run's buffer: whatever the client prints lands here
        mark = len(out.getvalue()) if isinstance(out, io.StringIO) else None
        response = api.competition_submit(str(csv_path), message, COMPETITION, quiet=True)
        if response.message == _UPLOAD_FAILED_MESSAGE:
            # The client printed the reason, if it had one (an exception during the PUT).
            printed = out.getvalue()[mark:].strip().splitlines() if mark is not None else []
            reason = f" ({printed[-1][:200]})" if printed else ""
            raise PipelineError(
                f"uploading {csv_path.name} to Kaggle failed{reason}; nothing was submitted: rerun to try again"
            )
        if not response.ref:
            raise PipelineError(f"Kaggle did not accept the submission: {response.message or 'no reason given'}")
        return {"ref": response.ref, "remaining": _remaining(api)}

    return _run(work, what, deadline=OPERATION_DEADLINE_FACTOR * _timeout())


def _remaining(api) -> int | None:
    """How many more submissions Kaggle allows today (GetSubmissionLimits), None if it won't say."""
    try:
        return api.competition_get_submission_limits(COMPETITION).num_allowed_now
    except Exception:
        return None


def remaining_today() -> int | None:
    return _run(
        lambda: _remaining(_api()),
        f"asking how many {COMPETITION} submissions are left today",
        deadline=OPERATION_DEADLINE_FACTOR * _timeout(),
    )


def submissions() -> list[dict]:
    """The user's submissions to the competition, newest first.

    Each is {"ref": int, "date": "YYYY-MM-DD HH:MM:SS" (UTC) or None, "description": str,
    "status": "pending" | "complete" | "error", "public_score": str or None}.
    """

    def work():
        api = _api()
        found: dict[int, object] = {}
        for page in range(1, MAX_PAGES + 1):
            batch = [
                s
                for s in (api.competition_submissions(COMPETITION, page_number=page, page_size=PAGE_SIZE) or [])
                if s is not None
            ]
            fresh = [s for s in batch if s.ref not in found]
            found.update((s.ref, s) for s in fresh)
            if len(batch) < PAGE_SIZE or not fresh:  # last page, or a server that ignores paging
                break
        return list(found.values())

    rows = []
    for s in _run(work, f"listing your {COMPETITION} submissions", deadline=OPERATION_DEADLINE_FACTOR * _timeout()):
        status = getattr(s.status, "name", s.status)
        rows.append(
            {
                "ref": s.ref,
                "date": s.date.strftime("%Y-%m-%d %H:%M:%S") if s.date else None,
                "description": s.description or "",
                "status": str(status).lower() if status is not None else None,
                "public_score": s.public_score or None,
            }
        )
    rows.sort(key=lambda r: (r["date"] or "", r["ref"]), reverse=True)
    return rows


# --------------------------------------------------------------------------- notebooks (kernels)
# What kaggle 2.2.5 calls a kernel is a notebook; `make kernel` (pipeline/kaggle/kernel.py) pushes one,
# polls its session and fetches its output through these calls. All checked against the installed
# client: KaggleApi.kernels_push (reads <folder>/kernel-metadata.json and the code file, then POSTs
# kernels.KernelsApiService/SaveKernel), kernels_status (GetKernelSessionStatus), kernels_output
# (ListKernelSessionOutput, then a plain GET of each file's signed URL, and the session log written
# to <slug>.log).

# Kaggle's words for "no GPU time left": the weekly quota ("exceeded the number of hours allowed to
# use GPU", "Accelerator Quota Exceeded") and the cap on concurrent GPU sessions ("Maximum batch GPU
# session count of N reached").
_GPU_QUOTA = re.compile(r"quota|gpu session count|hours allowed to use (the )?(gpu|accelerator)", re.IGNORECASE)
SETTINGS_URL = "https://www.kaggle.com/settings"


def is_gpu_quota_message(text: str | None) -> bool:
    return bool(text) and bool(_GPU_QUOTA.search(text))


def gpu_quota_message(server_text: str) -> str:
    return (
        f"Kaggle will not give the notebook a GPU: your GPU quota is used up ({server_text.strip()}); "
        f"it resets weekly ({SETTINGS_URL} shows when), or run without one: make kernel KERNEL_ACCELERATOR=none"
    )


def scrub(text: str) -> str:
    """One line, free of every key and token this process could send (for text from elsewhere)."""
    return _scrub(text, _secrets())


def _http_text(exc) -> str:
    """The server's message for an HTTPError raised by the client ("" when none)."""
    try:
        message = exc.response.json().get("message")
    except Exception:
        message = None
    if not isinstance(message, str) or not message:
        message = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else ""
    return message


def _kernel_http_error(exc, kernel: str, what: str):
    """A one-line PipelineError for an HTTP refusal that means something particular for a notebook,
    or None to let _explain word it (401, 429, 5xx and network trouble read the same everywhere)."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    text = _http_text(exc)
    if is_gpu_quota_message(text):
        return PipelineError(gpu_quota_message(text))
    if code == 404:
        return PipelineError(
            f"Kaggle knows no such notebook (HTTP 404) while {what}: "
            "push it with `make kernel`, with the credentials you use now"
        )
    if code == 403:
        return PipelineError(
            f"Kaggle refused access (HTTP 403) while {what}"
            + (f": {text}" if text else "")
            + ": the notebook must belong to the account whose credentials you use"
        )
    if code is not None and 400 <= code < 500 and code not in (401, 429):
        return PipelineError(f"Kaggle refused {what} (HTTP {code})" + (f": {text}" if text else ""))
    return None


def _kernel_call(operation, kernel: str, what: str, metadata_errors: bool = False):
    """operation() with the client's kernel-specific refusals turned into one-line PipelineErrors
    (metadata_errors: also the ValueError kernels_push raises for a metadata file it refuses)."""
    import requests

    try:
        return operation()
    except requests.HTTPError as exc:
        mapped = _kernel_http_error(exc, kernel, what)
        if mapped is None:
            raise
        raise mapped from None
    except ValueError as exc:
        # kernels_status / kernels_output turn a 401/403 into this ValueError (a long text
        # about benchmark slugs).
        if str(exc).startswith("Cannot access kernel"):
            raise PipelineError(
                f"Kaggle denied access to the notebook {kernel} while {what}: it must belong to "
                "the account whose credentials you use (or they changed since `make kernel`)"
            ) from None
        if metadata_errors and not isinstance(exc, UnicodeError):
            raise PipelineError(
                f"the kaggle client refused the notebook's metadata while {what}: "
                f"{' '.join(str(exc).split()) or type(exc).__name__}"
            ) from None
        raise


def username() -> str:
    """The Kaggle user name the configured credentials belong to (asks Kaggle only for a token)."""

    def work():
        api = _api()
        name = api.get_config_value(api.CONFIG_NAME_USER)
        if not name:
            raise PipelineError(
                "Kaggle did not say which user your credentials belong to: "
                "set KAGGLE_USERNAME, or use a legacy kaggle.json with a username"
            )
        return str(name)

    return _run(work, "reading your Kaggle user name", deadline=OPERATION_DEADLINE_FACTOR * _timeout())


def push_kernel(folder: Path) -> dict:
    """Push folder (kernel-metadata.json + its code file) as a new version of the notebook it names.

    Returns {"ref", "url", "version"}. One-line PipelineError when Kaggle refuses the push (the
    answer's `error`), leaves out a source the metadata asks for (invalid_*_sources: the notebook
    would run without its data), or says the GPU quota is used up.
    """
    folder = Path(folder)
    try:
        kernel = json.loads((folder / "kernel-metadata.json").read_text(encoding="utf-8")).get("id", "?")
    except (OSError, ValueError):
        kernel = "?"
    what = f"pushing the notebook {kernel}"

    def work():
        api = _api()
        response = _kernel_call(lambda: api.kernels_push(str(folder)), kernel, what, metadata_errors=True)
        if response is None:
            raise PipelineError(f"Kaggle gave no answer while {what}")
        if response.error:
            if is_gpu_quota_message(response.error):
                raise PipelineError(gpu_quota_message(response.error))
            raise PipelineError(f"Kaggle refused the notebook {kernel}: {response.error}")
        invalid = [
            (kind, list(getattr(response, f"invalid_{kind}_sources") or []))
            for kind in ("competition", "dataset", "kernel", "model")
        ]
        invalid = [(kind, names) for kind, names in invalid if names]
        if invalid:
            listed = "; ".join(f"{kind} {', '.join(map(str, names))}" for kind, names in invalid)
            hint = (
                f"accept the competition's rules at {RULES_URL} with this account, then rerun `make kernel`"
                if invalid[0][0] == "competition"
                else "check the sources in kernel-metadata.json"
            )
            raise PipelineError(
                f"Kaggle saved the notebook {kernel} without sources it cannot attach ({listed}), "
                f"so it would run without its data: {hint}"
            )
        return {"ref": response.ref or "", "url": response.url or "", "version": response.version_number}

    return _run(work, what, deadline=OPERATION_DEADLINE_FACTOR * _timeout())


def kernel_status(kernel: str) -> dict:
    """{"status": "QUEUED" | "RUNNING" | "COMPLETE" | "ERROR" | "CANCEL_REQUESTED" | ..., "failure_message"}
    of the notebook's session (`owner/slug`, or `owner/slug/version` for that version's)."""
    what = f"asking for the status of the notebook {kernel}"

    def work():
        api = _api()
        response = _kernel_call(lambda: api.kernels_status(kernel), kernel, what)
        status = getattr(response.status, "name", response.status)
        return {
            "status": str(status).upper() if status is not None else "UNKNOWN",
            "failure_message": response.failure_message or None,
        }

    return _run(work, what, deadline=OPERATION_DEADLINE_FACTOR * _timeout())


def kernel_output(kernel: str, dest: Path, file_pattern: str | None = None) -> list[Path]:
    """Download the notebook session's output files (those matching file_pattern, a regex; all when
    None) into dest, and its log into dest/<slug>.log; return the paths written. Each read is bounded
    by KAGGLE_TIMEOUT (the client's own 300 s for the files), the whole download is not."""
    dest = Path(dest)
    what = f"fetching the output of the notebook {kernel}"

    def work():
        api = _api()
        files, _ = _kernel_call(
            lambda: api.kernels_output(kernel, str(dest), file_pattern=file_pattern, force=True, quiet=True),
            kernel,
            what,
        )
        return [Path(f) for f in files]

    return _run(work, what)
