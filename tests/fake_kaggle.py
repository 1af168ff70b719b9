"""A fake Kaggle API on 127.0.0.1 that the real `kaggle` 2.2.5 client talks to over HTTP.

How the real client is pointed here (all verified in the installed kaggle/kagglesdk source):

* ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` makes kagglesdk use the endpoint ``http://localhost``
  and, off PROD, put the API under ``/api``: every call is a JSON ``POST`` to
  ``http://localhost/api/v1/<service>/<Method>`` (kagglesdk/kaggle_http_client.py,
  ``_get_request_url``), e.g. ``/api/v1/competitions.CompetitionApiService/ListSubmissions``.
  The endpoint has no port, so we can't simply listen on it.
* ``HTTP_PROXY=http://127.0.0.1:PORT``: the client's requests.Session merges the environment's
  proxy settings into every send (``merge_environment_settings``), so each request reaches this
  server as a proxy request with an absolute URL (``POST http://localhost/api/v1/... HTTP/1.1``).
  The blob URLs this fake hands out (download redirect, upload URL) go through the same proxy.

The calls and their shapes (kagglesdk/competitions/services/competition_api_service.py and
kaggle/api/kaggle_api_extended.py):

* ``DownloadDataFiles`` {competitionName} -> a 302 redirect to the data blob; requests follows
  it with a GET and the client streams that body into ``<competition>.zip``.
* ``StartSubmissionUpload`` {competitionName, fileName, contentLength, ...} -> {token, createUrl};
  then the client ``PUT``s the file's bytes to createUrl (a 200/201 is success, anything else
  makes ``competition_submit`` return message "Could not submit to competition" and ref 0);
  then ``CreateSubmission`` {competitionName, blobFileTokens, submissionDescription} -> {message, ref}.
* ``ListSubmissions`` {competitionName, sortBy, group, page, pageToken, pageSize} -> {submissions}.
* ``GetSubmissionLimits`` {competitionName} -> {numToday, numTotal, numAllowedNow, limitedByTotal}.
* ``security.OAuthService/IntrospectToken`` {token} -> {active, username}: what
  ``KaggleApi.authenticate()`` asks when it finds an access token (``KAGGLE_API_TOKEN``,
  ``~/.kaggle/access_token``).

Notebooks ("kernels"; kagglesdk/kernels/services/kernels_api_service.py, KaggleApi.kernels_push,
kernels_status and kernels_output):

* ``kernels.KernelsApiService/SaveKernel`` {slug: "owner/slug", newTitle, text (the code file),
  language, kernelType, isPrivate, enableGpu, enableTpu, machineShape, enableInternet, datasetDataSources,
  competitionDataSources, kernelDataSources, modelDataSources, categoryIds, ...} ->
  {ref, url, versionNumber, error, invalidTags, invalidDatasetSources, invalidCompetitionSources,
  invalidKernelSources, invalidModelSources, kernelId}. Each push is a new version; a refusal is
  an answer with ``error`` set (HTTP 200), not an HTTP error.
* ``GetKernelSessionStatus`` {userName, kernelSlug, versionLabel: "v<N>" or absent} ->
  {status: a KernelWorkerStatus name (QUEUED, RUNNING, COMPLETE, ERROR, ...), failureMessage}.
* ``ListKernelSessionOutput`` {userName, kernelSlug, pageSize, pageToken, versionLabel} ->
  {files: [{fileName, url}], log, nextPageToken}; the client GETs each url (a signed blob URL,
  through the same proxy here) and writes ``log`` (Kaggle's JSON list of {stream_name, time,
  data}) to <slug>.log.

A test either scripts a session (``kernel_statuses``, ``kernel_files``, ``kernel_log``,
``kernel_failure_message``) or sets ``kernel_runner``, which the fake calls in a thread with each
pushed FakeKernel to "run" it (see ``run_notebook``: the pushed script, really executed in a
folder laid out like /kaggle); the session is RUNNING meanwhile and ends as the runner leaves it.

An error is a JSON body {"code": N, "message": ...} with HTTP status N, which the client turns
into ``requests.HTTPError`` (``KaggleHttpClient._prepare_response``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

API_PREFIX = "/api/v1/"
COMPETITION = "digit-recognizer"
BLOB_URL = f"http://blobs.fake.test/competitions/{COMPETITION}/{COMPETITION}.zip?sig=fake-signature"
UPLOAD_URL = "http://uploads.fake.test/upload/{n}?upload_id=fake"
UPLOAD_TOKEN = "fake-blob-token-{n}"
KERNEL_OUTPUT_URL = "http://outputs.fake.test/kernels/{owner}/{slug}/{version}/{name}?sig=fake"
# The API methods that take a competitionName (and answer 404 for another competition).
COMPETITION_METHODS = {
    "DownloadDataFiles",
    "StartSubmissionUpload",
    "CreateSubmission",
    "ListSubmissions",
    "GetSubmissionLimits",
}


@dataclass
class FakeKernel:
    """One pushed version of a notebook and its session; a runner or a test may change it any time."""

    owner: str
    slug: str
    version: int
    payload: dict  # SaveKernel's JSON body, as received
    status: str = "QUEUED"  # a KernelWorkerStatus name
    failure_message: str | None = None
    files: dict = field(default_factory=dict)  # output file name (may hold "/") -> bytes
    log: str | None = None  # the session log, in Kaggle's JSON form (see notebook_log)
    runs: int = 0  # how many times a runner ran it
    thread: threading.Thread | None = field(default=None, repr=False)  # the runner's, if any

    @property
    def script(self) -> str:
        """The pushed code file's text."""
        return self.payload.get("text") or ""

    @property
    def id(self) -> str:
        return f"{self.owner}/{self.slug}"


def notebook_log(text: str, stream: str = "stdout") -> str:
    """Plain text as Kaggle keeps a session's log: a JSON list of {stream_name, time, data}, a line each."""
    lines = text.splitlines(keepends=True)
    return json.dumps(
        [{"stream_name": stream, "time": round(0.5 * i, 3), "data": line} for i, line in enumerate(lines)]
    )


def run_notebook(kernel: FakeKernel, root: Path, python: list[str], env: dict, timeout: float = 600) -> None:
    """What Kaggle does with a pushed script: run it with <root>/working as the current folder
    (root laid out like /kaggle: the caller puts the competition's files in input/), then serve
    every file the run left in working/ as the session's output and its stdout+stderr as the log."""
    working = Path(root) / "working"
    working.mkdir(parents=True, exist_ok=True)
    script = Path(root) / "src" / f"{kernel.slug}.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(kernel.script, encoding="utf-8")
    kernel.status = "RUNNING"
    try:
        proc = subprocess.run(
            [*python, str(script)],
            cwd=working,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
        )
        output, ok = proc.stdout, proc.returncode == 0
    except subprocess.TimeoutExpired as exc:
        output, ok = (exc.stdout or b"").decode(errors="replace") + "\n[killed: timeout]\n", False
    kernel.files = {
        p.relative_to(working).as_posix(): p.read_bytes() for p in sorted(working.rglob("*")) if p.is_file()
    }
    kernel.log = notebook_log(output)
    kernel.runs += 1
    if not ok:
        kernel.failure_message = "Your notebook hit an unhandled error while executing"
    kernel.status = "COMPLETE" if ok else "ERROR"


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str  # GET / POST / PUT
    url: str  # the absolute URL the client asked the proxy for
    path: str  # its path, e.g. /api/v1/competitions.CompetitionApiService/ListSubmissions
    name: str  # the API method (ListSubmissions), or "blob" / "upload"
    headers: dict
    body: bytes
    json: dict | None = None


@dataclass
class FakeKaggle:
    """The knobs a test turns, and what the server saw. Every attribute may be changed mid-test."""

    host: str = "127.0.0.1"
    port: int = 0
    # --- what the server expects and serves
    username: str = "tester"
    key: str = ""  # the legacy API key it accepts (Basic auth)
    token: str = ""  # the access token it accepts (Bearer auth)
    check_auth: bool = True  # False: accept any request, signed or not
    zip_bytes: bytes = b""  # the competition data blob
    competitions: tuple = (COMPETITION,)
    submissions: list = field(default_factory=list)  # ApiSubmission dicts, newest first
    limits: dict = field(
        default_factory=lambda: {"numToday": 0, "numTotal": 0, "numAllowedNow": 5, "limitedByTotal": False}
    )
    # --- failure modes
    status: dict = field(default_factory=dict)  # API method name (or "*", "blob", "upload") -> HTTP status
    messages: dict = field(default_factory=dict)  # HTTP status -> the error message to send with it
    hang: set = field(default_factory=set)  # names (or "*") that are accepted and never answered
    upload_status: int = 200  # the PUT's answer; e.g. 500 for a failed upload
    create_submission_answer: dict | None = None  # override CreateSubmission's {message, ref}
    # --- notebooks
    kernels: list = field(default_factory=list)  # FakeKernel, one per push (version), oldest first
    save_kernel_answer: dict | None = None  # override SaveKernel's answer (error, invalid*Sources)
    kernel_runner: Callable | None = None  # runner(FakeKernel), called in a thread after each push
    kernel_statuses: list = field(default_factory=list)  # scripted statuses: each status call takes the
    #                                              first; the last one repeats; empty: the kernel's own
    kernel_failure_message: str | None = None  # a new kernel's failureMessage
    kernel_files: dict = field(default_factory=dict)  # a new kernel's output files (name -> bytes)
    kernel_log: str | None = None  # a new kernel's log (JSON: see notebook_log)
    # --- what was received
    requests: list = field(default_factory=list)
    uploads: list = field(default_factory=list)  # bytes of each PUT
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _release: threading.Event = field(default_factory=threading.Event, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeKaggle:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kaggle", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # let hanging handlers go
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def release_hung(self) -> None:
        """Let every hung request go (unanswered: the connection just closes) and hang no more."""
        self.hang.clear()
        self._release.set()

    @property
    def proxy_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ queries for tests
    def calls(self, name: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.name == name]

    @property
    def names(self) -> list[str]:
        with self._lock:
            return [r.name for r in self.requests]

    def kernel(self, version: int | None = None) -> FakeKernel | None:
        """The last pushed kernel (or that version of it)."""
        with self._lock:
            found = [k for k in self.kernels if version is None or k.version == version]
        return found[-1] if found else None

    def wait_for_runs(self, timeout: float = 600) -> None:
        """Block until no kernel is QUEUED or RUNNING under a runner (for tests that stop early)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(k.thread and k.thread.is_alive() for k in list(self.kernels)):
            time.sleep(0.1)

    def add_submission(
        self,
        ref: int,
        date: str,
        description: str,
        status: str = "COMPLETE",
        public_score: str | None = "0.99000",
        file_name: str = "submission.csv",
    ) -> dict:
        sub = {
            "ref": ref,
            "date": date,
            "description": description,
            "status": status,
            "fileName": file_name,
            "submittedBy": self.username,
            "teamName": self.username,
        }
        if public_score is not None:
            sub["publicScore"] = public_score
        self.submissions.insert(0, sub)
        return sub

    # ------------------------------------------------------------------ internals
    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def _authorized(self, headers) -> bool:
        if not self.check_auth:
            return True
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return bool(self.key) and (user, key) == (self.username, self.key)
        if auth.startswith("Bearer "):
            return bool(self.token) and auth[7:] == self.token
        return False


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeKaggle
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # --- plumbing
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes = b"", content_type: str | None = "application/json", headers: dict | None = None
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, message: str) -> None:
        self._json({"code": status, "message": message}, status)

    def _hang(self) -> None:
        """Accept the request and never answer (until the fake is stopped)."""
        self.server_fake._release.wait()
        self.close_connection = True

    # --- dispatch
    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def _handle(self):
        fake = self.server_fake
        url = self.path
        split = urllib.parse.urlsplit(url)
        path = split.path
        body = self._read_body()
        payload = None
        if path.startswith(API_PREFIX):
            name = path.rsplit("/", 1)[-1]
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = None
        elif self.command == "PUT" and path.startswith("/upload/"):
            name = "upload"
        elif self.command == "GET" and path.startswith("/competitions/"):
            name = "blob"
        elif self.command == "GET" and path.startswith("/kernels/"):
            name = "kernel-output"
        else:
            name = "unknown"
        fake._record(Recorded(self.command, url, path, name, dict(self.headers), body, payload))

        if name in fake.hang or "*" in fake.hang:
            return self._hang()
        forced = fake.status.get(name, fake.status.get("*"))
        if forced:
            return self._error(forced, fake.messages.get(forced, _REASONS.get(forced, "Error")))

        if name == "blob":
            return self._send(
                200,
                fake.zip_bytes,
                "application/zip",
                {"Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())},
            )
        if name == "upload":
            fake.uploads.append(body)
            return self._send(fake.upload_status, b"", None)
        if name == "kernel-output":
            return self._kernel_output_file(path)
        if name == "unknown" or payload is None:
            return self._error(404, "Not found")

        if name == "IntrospectToken":
            active = bool(fake.token) and payload.get("token") == fake.token
            return self._json({"active": active, "username": fake.username if active else ""})

        if not fake._authorized(self.headers):
            return self._error(401, "Unauthenticated")
        handler = getattr(self, f"api_{name}", None)
        if handler is None:
            return self._error(404, f"No such method {name}")
        if name in COMPETITION_METHODS and payload.get("competitionName") not in fake.competitions:
            return self._error(404, "Competition not found")
        return handler(payload)

    # --- the API methods
    def api_DownloadDataFiles(self, payload):
        self._send(302, b"", None, {"Location": BLOB_URL})

    def api_StartSubmissionUpload(self, payload):
        n = len(self.server_fake.calls("StartSubmissionUpload"))
        self._json({"token": UPLOAD_TOKEN.format(n=n), "createUrl": UPLOAD_URL.format(n=n)})

    def api_CreateSubmission(self, payload):
        fake = self.server_fake
        if fake.create_submission_answer is not None:
            return self._json(fake.create_submission_answer)
        issued = {UPLOAD_TOKEN.format(n=i + 1) for i in range(len(fake.calls("StartSubmissionUpload")))}
        if payload.get("blobFileTokens") not in issued:
            return self._error(400, "Unknown blob token")
        ref = 1000 + len(fake.calls("CreateSubmission"))
        fake.add_submission(
            ref,
            time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            payload.get("submissionDescription", ""),
            status="PENDING",
            public_score=None,
        )
        fake.limits["numToday"] += 1
        fake.limits["numAllowedNow"] = max(0, fake.limits["numAllowedNow"] - 1)
        self._json({"message": "Successfully submitted to Digit Recognizer", "ref": ref})

    def api_ListSubmissions(self, payload):
        subs = self.server_fake.submissions
        size = int(payload.get("pageSize") or 20)
        page = int(payload.get("page") or 1)
        chunk = subs[(page - 1) * size : page * size]
        self._json({"submissions": chunk, "nextPageToken": ""})

    def api_GetSubmissionLimits(self, payload):
        self._json(self.server_fake.limits)

    # --- notebooks
    def _find_kernel(self, payload) -> FakeKernel | None:
        fake = self.server_fake
        label = payload.get("versionLabel")
        with fake._lock:
            found = [
                k
                for k in fake.kernels
                if (k.owner, k.slug) == (payload.get("userName"), payload.get("kernelSlug"))
                and (label is None or f"v{k.version}" == label)
            ]
        return found[-1] if found else None

    def api_SaveKernel(self, payload):
        fake = self.server_fake
        owner, _, slug = (payload.get("slug") or "").partition("/")
        if owner != fake.username:
            return self._error(403, f"You cannot push a notebook owned by {owner}")
        if fake.save_kernel_answer is not None:
            return self._json(fake.save_kernel_answer)
        with fake._lock:
            version = 1 + sum(1 for k in fake.kernels if (k.owner, k.slug) == (owner, slug))
            kernel = FakeKernel(
                owner,
                slug,
                version,
                payload,
                failure_message=fake.kernel_failure_message,
                files=dict(fake.kernel_files),
                log=fake.kernel_log,
            )
            fake.kernels.append(kernel)
        if fake.kernel_runner is not None:
            kernel.thread = threading.Thread(
                target=fake.kernel_runner, args=(kernel,), name="fake-notebook", daemon=True
            )
            kernel.thread.start()
        self._json(
            {
                "ref": f"/code/{owner}/{slug}",
                "url": f"https://www.kaggle.com/code/{owner}/{slug}",
                "versionNumber": version,
                "invalidTags": [],
                "invalidDatasetSources": [],
                "invalidCompetitionSources": [],
                "invalidKernelSources": [],
                "invalidModelSources": [],
                "kernelId": 4242,
            }
        )

    def api_GetKernelSessionStatus(self, payload):
        fake = self.server_fake
        kernel = self._find_kernel(payload)
        if kernel is None:
            return self._error(404, "Notebook not found")
        with fake._lock:
            scripted = fake.kernel_statuses[0] if fake.kernel_statuses else None
            if len(fake.kernel_statuses) > 1:
                fake.kernel_statuses.pop(0)
        answer = {"status": scripted or kernel.status}
        if kernel.failure_message and answer["status"] in ("ERROR", "CANCEL_ACKNOWLEDGED"):
            answer["failureMessage"] = kernel.failure_message
        self._json(answer)

    def api_ListKernelSessionOutput(self, payload):
        kernel = self._find_kernel(payload)
        if kernel is None:
            return self._error(404, "Notebook not found")
        names = sorted(kernel.files)
        start = int(payload.get("pageToken") or 0)
        size = int(payload.get("pageSize") or 20)
        page = names[start : start + size]
        files = [
            {
                "fileName": n,
                "url": KERNEL_OUTPUT_URL.format(
                    owner=kernel.owner, slug=kernel.slug, version=kernel.version, name=urllib.parse.quote(n)
                ),
            }
            for n in page
        ]
        answer = {"files": files, "nextPageToken": str(start + size) if start + size < len(names) else ""}
        if kernel.log is not None:
            answer["log"] = kernel.log
        self._json(answer)

    def _kernel_output_file(self, path: str):
        parts = path.split("/", 5)  # '', 'kernels', owner, slug, version, name
        kernel = None
        if len(parts) == 6 and parts[4].isdigit():
            kernel = self._find_kernel({"userName": parts[2], "kernelSlug": parts[3], "versionLabel": f"v{parts[4]}"})
        name = urllib.parse.unquote(parts[5]) if len(parts) == 6 else ""
        if kernel is None or name not in kernel.files:
            return self._error(404, "No such output file")
        self._send(
            200,
            kernel.files[name],
            "application/octet-stream",
            {"Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())},
        )


_REASONS = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "You must accept this competition's rules before you'll be able to download files.",
    404: "Competition not found",
    429: "Too many requests",
    500: "Internal server error",
}
