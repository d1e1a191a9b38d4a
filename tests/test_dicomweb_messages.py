"""DICOMweb: credentials kept out of URLs, no login over plain http, a CA bundle for a private-CA
PACS, and plain messages for redirects, 404s and odd answers (local HTTP servers, no Orthanc)."""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from store_helpers import make_info, smooth_image

from desktop_app.core.store import CaptureStore
from desktop_app.core.submission import (
    DicomWebTarget,
    SubmissionError,
    SubmissionQueue,
    make_target,
)
from desktop_app.core.submission.credentials import redact_text, redact_url, split_url_credentials

pytest.importorskip("requests")
pytest.importorskip("pydicom")

Reply = tuple[int, dict[str, str], bytes]


class _Server:
    """A local HTTP(S) server whose POST answer is ``reply(handler)``; records requests."""

    def __init__(self, reply: Callable[[BaseHTTPRequestHandler], Reply], host: str) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests.append(
                    {"path": self.path, "authorization": self.headers.get("Authorization")}
                )
                status, headers, body = reply(self)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.scheme = "http"

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/dicom-web"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    servers: list[_Server] = []

    def start(reply: Callable[[BaseHTTPRequestHandler], Reply], host: str = "127.0.0.1") -> _Server:
        server = _Server(reply, host)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaptureStore]:
    s = CaptureStore(tmp_path / "store")
    yield s
    s.close()


def _confirmation(sop_uid: str) -> bytes:
    return json.dumps(
        {"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [sop_uid]}}]}}
    ).encode()


def _send(target: DicomWebTarget, store: CaptureStore) -> SubmissionError:
    record = store.add(smooth_image(), make_info())
    with pytest.raises(SubmissionError) as failure:
        target.submit(store.get(record.id), record.image_path)
    return failure.value


# ---- URLs and credentials --------------------------------------------------------------------


def test_redaction_of_credentials_in_urls_and_text() -> None:
    url = "https://alice:s3cr%40t@pacs.example:8443/dicom-web?token=abc#x"
    assert split_url_credentials(url) == (
        "https://pacs.example:8443/dicom-web?token=abc#x",
        "alice",
        "s3cr@t",
    )
    assert redact_url(url) == "https://pacs.example:8443/dicom-web"
    assert redact_url("http://[::1]:8042/dicom-web") == "http://[::1]:8042/dicom-web"
    assert redact_text(f"failed for {url} and http://bob:pw@h/x") == (
        "failed for https://pacs.example:8443/dicom-web?token=abc#x and http://h/x"
    )


def test_a_password_in_the_url_is_refused_and_never_echoed() -> None:
    url = "https://alice:hunter2@pacs.example/dicom-web"
    with pytest.raises(ValueError) as refused:
        make_target({"kind": "dicomweb", "url": url})
    assert "user name or password" in str(refused.value)
    assert "hunter2" not in str(refused.value) and "alice" not in str(refused.value)
    with pytest.raises(ValueError):
        DicomWebTarget(url)


def test_login_over_plain_http_is_refused_unless_explicitly_allowed() -> None:
    settings = {"kind": "dicomweb", "url": "http://pacs/dicom-web", "username": "u"}
    with pytest.raises(ValueError, match="unencrypted"):
        make_target({**settings, "password": "p"})
    allowed = make_target({**settings, "password": "p", "allow_insecure_http": "true"})
    assert isinstance(allowed, DicomWebTarget) and allowed.auth == ("u", "p")
    # no login, nothing to protect: plain http stays possible (a PACS on the same machine)
    assert make_target({"kind": "dicomweb", "url": "http://localhost:8042/dicom-web"})
    https = make_target({**settings, "url": "https://pacs/dicom-web", "password": "p"})
    assert isinstance(https, DicomWebTarget) and https.verify is True


def test_ca_bundle_setting_is_used_for_verification(tmp_path: Path) -> None:
    bundle = tmp_path / "hospital-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    target = make_target(
        {"kind": "dicomweb", "url": "https://pacs/dicom-web", "ca_bundle": str(bundle)}
    )
    assert isinstance(target, DicomWebTarget) and target.verify == str(bundle)
    with pytest.raises(ValueError, match="CA bundle"):
        make_target(
            {"kind": "dicomweb", "url": "https://pacs/dicom-web", "ca_bundle": str(tmp_path / "x")}
        )


def _make_private_ca(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1, by the openssl CLI."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_private_ca_pacs_works_with_its_ca_bundle(
    store: CaptureStore, tmp_path: Path, serve: Callable[..., _Server]
) -> None:
    """Without a CA-bundle setting a PACS with a hospital CA failed forever ("cannot be
    reached", retried); now the message says what to set, and with the bundle it works."""
    ca, cert, key = _make_private_ca(tmp_path)
    sop: dict[str, str] = {}
    server = serve(
        lambda h: (200, {"Content-Type": "application/dicom+json"}, _confirmation(sop["uid"]))
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.scheme = "https"
    settings = {"kind": "dicomweb", "url": server.url, "username": "u", "password": "p"}
    untrusted = make_target(settings)
    assert isinstance(untrusted, DicomWebTarget)
    failure = _send(untrusted, store)
    assert not failure.transient and "CA bundle" in str(failure) and "not trusted" in str(failure)
    trusted = make_target({**settings, "ca_bundle": str(ca)})
    record = store.add(smooth_image(), make_info())
    sop["uid"] = record.sop_instance_uid
    assert trusted.submit(store.get(record.id), record.image_path) == record.sop_instance_uid


# ---- answers ---------------------------------------------------------------------------------


def test_a_redirect_is_reported_as_such_not_as_a_wrong_password(
    store: CaptureStore, serve: Callable[..., _Server]
) -> None:
    """requests drops the Authorization header on a redirect to another host; the new host then
    answered 401 and the app said "check the password"."""

    def login_or_401(handler: BaseHTTPRequestHandler) -> Reply:
        return (200, {}, b"") if handler.headers.get("Authorization") else (401, {}, b"")

    elsewhere = serve(login_or_401, host="localhost")
    moved = serve(lambda h: (307, {"Location": elsewhere.url + "/studies"}, b""))
    target = DicomWebTarget(moved.url, auth=("u", "p"), timeout_s=5)
    failure = _send(target, store)
    assert "redirects to http://localhost" in str(failure) and "refused the login" not in str(
        failure
    )
    assert not failure.transient
    assert elsewhere.requests == []  # the login went nowhere else
    # credentials or tokens in the Location are not repeated
    moved2 = serve(lambda h: (302, {"Location": "https://x:pw@pacs2/dicom-web?t=1"}, b""))
    failure = _send(DicomWebTarget(moved2.url, timeout_s=5), store)
    assert "https://pacs2/dicom-web " in str(failure) and "pw" not in str(failure)


def test_404_gives_a_plain_message_and_logs_no_body(
    store: CaptureStore, serve: Callable[..., _Server], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(
        {
            "HttpError": "Not Found",
            "HttpStatus": 404,
            "Message": "Unknown resource for patient P-1001",
            "Method": "POST",
            "OrthancError": "Unknown resource",
            "OrthancStatus": 17,
            "Uri": "/dicom-web/studies",
        }
    ).encode()
    server = serve(lambda h: (404, {"Content-Type": "application/json"}, body))
    with caplog.at_level(logging.DEBUG):
        failure = _send(DicomWebTarget(server.url, timeout_s=5), store)
    assert str(failure) == (
        f"The PACS has no DICOMweb service at {server.url} (HTTP 404); check the server "
        "address in Settings (it usually ends in /dicom-web)."
    )
    assert not failure.transient
    assert "OrthancStatus 17" in caplog.text and "P-1001" not in caplog.text
    assert "{" not in str(failure)


def test_other_rejections_do_not_show_the_raw_body(
    store: CaptureStore, serve: Callable[..., _Server]
) -> None:
    server = serve(lambda h: (400, {"Content-Type": "application/json"}, b'{"Details": "P-1001"}'))
    failure = _send(DicomWebTarget(server.url, timeout_s=5), store)
    assert "HTTP 400" in str(failure) and "P-1001" not in str(failure)


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'"stored"', b"null", b'{"00081199": [1]}', b'{"00081198": {"Value": ["x"]}}'],
)
def test_odd_confirmations_give_readable_errors_not_crashes(
    store: CaptureStore, serve: Callable[..., _Server], payload: bytes
) -> None:
    server = serve(lambda h: (200, {"Content-Type": "application/dicom+json"}, payload))
    failure = _send(DicomWebTarget(server.url, timeout_s=5), store)
    assert isinstance(failure, SubmissionError)


def test_no_credentials_reach_the_database_or_the_log(
    store: CaptureStore, serve: Callable[..., _Server], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(lambda h: (503, {}, b""))
    target = make_target(
        {
            "kind": "dicomweb",
            "url": server.url,
            "username": "alice",
            "password": "hunter2",
            "allow_insecure_http": "true",
        }
    )
    queue = SubmissionQueue(store, target)
    record = store.add(smooth_image(), make_info())
    queue.enqueue(record.id)
    with caplog.at_level(logging.DEBUG):
        status = queue.process_pending()
    assert "busy" in str(status.last_error)
    assert server.requests and server.requests[0]["authorization"].startswith("Basic ")
    history = json.dumps(store.history(record.id), default=str)
    for text in (caplog.text, history, str(status.last_error)):
        assert "hunter2" not in text
