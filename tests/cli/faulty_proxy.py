"""A faulty HTTP proxy between the `datomic-aws` process and the moto server.

It answers chosen attempts of AWS calls itself, with the error the service would send, and forwards
the rest. Two kinds of fault:

- `fail_attempts=N`: the first N attempts of *every* call are answered with a throttling error (the
  service's own code and protocol) and an HTTP 500, alternately; attempt N+1 is forwarded. An
  attempt is recognised by botocore's `amz-sdk-invocation-id` / `amz-sdk-request: attempt=K`
  headers (one invocation id per API call, the same on each retry); a request without them falls
  back to counting identical requests (method, path, body).
- `lose_answers={"iam", ...}`: the first attempt of every mutating call to those services is
  forwarded, and moto's answer is replaced by an HTTP 500: the write happened but the client never
  heard of it, so botocore's retry repeats a write that already took effect.
- `deny={"iam:CreateRole", ...}`: every attempt of those operations is answered with the service's
  AccessDenied error (HTTP 403) and the request id `REQUEST_ID`.
- `html={"iam:GetRole", ...}`: every attempt of those operations is answered with an HTML page
  (HTTP 200, `text/html`), as a corporate proxy or a captive portal answers; `html_page` is that
  page (XHTML_PAGE is well-formed XML, which botocore's XML parser does not reject by itself).

`calls` records, per call, the attempts seen and how each was answered, so a test can prove that
every call that reached moto was faulted first.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from datomic_aws.aws import is_mutating

REQUEST_ID = "fault-injected-req-7e1d"
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Access denied</title></head>\n"
    b"<body><h1>Blocked by the proxy</h1><br>Contact your administrator.</body></html>\n"
)
XHTML_PAGE = (
    b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>502 Bad Gateway</title></head>'
    b"<body><h1>Bad Gateway</h1></body></html>"
)
_SERVICE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_ATTEMPT = re.compile(r"attempt=(\d+)")
_HOP = ("transfer-encoding", "connection", "content-length")


@dataclass
class Call:
    service: str
    operation: str
    outcomes: list[str] = field(
        default_factory=list
    )  # per attempt: throttle, 500, denied, html, sent, lost


def service_of(headers: Any) -> str:
    m = _SERVICE.search(headers.get("Authorization") or "")
    return m.group(1) if m else ""


def operation_of(headers: Any, body: bytes) -> str:
    target = headers.get("X-Amz-Target") or ""
    if target:
        return str(target).rsplit(".", 1)[-1]
    if body and b"Action=" in body:
        return parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    return ""  # S3's REST calls


def _mutating(method: str, service: str, operation: str) -> bool:
    if service == "s3" or not operation:
        return method in ("PUT", "POST", "DELETE")
    return is_mutating(operation)


def _xml(text: str) -> tuple[bytes, str]:
    return text.encode(), "text/xml"


def error_response(service: str, headers: Any, kind: str) -> tuple[int, bytes, str]:
    """(status, body, content type) of a `throttle`, `500` or `denied` answer, in the protocol of
    the service: JSON (`__type`), EC2 query, other query services (`ErrorResponse`), S3 REST."""
    json_protocol = bool(headers.get("X-Amz-Target"))
    if service == "s3":
        status, code = {"throttle": (503, "SlowDown"), "500": (500, "InternalError")}.get(
            kind, (403, "AccessDenied")
        )
        body, ctype = _xml(
            f"<Error><Code>{code}</Code><Message>injected {kind}</Message>"
            f"<RequestId>{REQUEST_ID}</RequestId></Error>"
        )
        return status, body, ctype
    if json_protocol:
        status, code = {
            "throttle": (400, "ThrottlingException"),
            "500": (500, "InternalFailure"),
        }.get(kind, (400, "AccessDeniedException"))
        body = json.dumps({"__type": code, "message": f"injected {kind}"}).encode()
        return status, body, "application/x-amz-json-1.1"
    if service == "ec2":
        status, code = {
            "throttle": (503, "RequestLimitExceeded"),
            "500": (500, "InternalError"),
        }.get(kind, (403, "UnauthorizedOperation"))
        body, ctype = _xml(
            f"<Response><Errors><Error><Code>{code}</Code><Message>injected {kind}</Message>"
            f"</Error></Errors><RequestID>{REQUEST_ID}</RequestID></Response>"
        )
        return status, body, ctype
    status, code, who = {
        "throttle": (400, "Throttling", "Sender"),
        "500": (500, "InternalFailure", "Receiver"),
    }.get(kind, (403, "AccessDenied", "Sender"))
    body, ctype = _xml(
        f"<ErrorResponse><Error><Type>{who}</Type><Code>{code}</Code>"
        f"<Message>injected {kind}</Message></Error><RequestId>{REQUEST_ID}</RequestId>"
        "</ErrorResponse>"
    )
    return status, body, ctype


def read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """A request's body, plain or chunked (botocore streams S3 uploads chunked)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            chunk = handler.rfile.read(size)
            handler.rfile.readline()
            if size == 0:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class FaultyProxy:
    def __init__(
        self,
        upstream: str,
        *,
        fail_attempts: int = 0,
        lose_answers: Iterable[str] = (),
        deny: Iterable[str] = (),
        html: Iterable[str] = (),
        html_page: bytes = HTML_PAGE,
    ) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = str(parts.hostname), int(parts.port or 80)
        self.fail_attempts = fail_attempts
        self.lose_answers = set(lose_answers)
        self.deny = set(deny)
        self.html = set(html)
        self.html_page = html_page
        self.calls: dict[str, Call] = {}
        self.marks: list[int] = []  # for tests: len(calls) at chosen moments
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                return None

            def _body(self) -> bytes:
                return read_body(self)

            def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                kind = proxy._decide(self.command, self.path, self.headers, body)
                if kind == "html":
                    self._reply(
                        200, proxy.html_page, [("Content-Type", "text/html; charset=utf-8")]
                    )
                    return
                if kind not in ("sent", "lost"):
                    status, data, ctype = error_response(
                        service_of(self.headers), self.headers, kind
                    )
                    self._reply(
                        status,
                        data,
                        [
                            ("Content-Type", ctype),
                            ("x-amzn-RequestId", REQUEST_ID),
                            ("x-amz-request-id", REQUEST_ID),
                        ],
                    )
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    status, resp_headers = resp.status, resp.getheaders()
                finally:
                    conn.close()
                if kind == "lost":
                    status, data, ctype = error_response(
                        service_of(self.headers), self.headers, "500"
                    )
                    resp_headers = [("Content-Type", ctype), ("x-amzn-RequestId", REQUEST_ID)]
                self._reply(status, data, resp_headers)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _decide(self, method: str, path: str, headers: Any, body: bytes) -> str:
        service, operation = service_of(headers), operation_of(headers, body)
        key = headers.get("amz-sdk-invocation-id") or (
            f"{method} {path} {hashlib.sha256(body).hexdigest()}"
        )
        with self._lock:
            call = self.calls.setdefault(key, Call(service, operation))
            m = _ATTEMPT.search(headers.get("amz-sdk-request") or "")
            attempt = int(m.group(1)) if m else len(call.outcomes) + 1
            if f"{service}:{operation}" in self.deny:
                kind = "denied"
            elif f"{service}:{operation}" in self.html:
                kind = "html"
            elif (
                service in self.lose_answers
                and attempt == 1
                and _mutating(method, service, operation)
            ):
                kind = "lost"
            elif attempt <= self.fail_attempts:
                kind = "throttle" if attempt % 2 else "500"
            else:
                kind = "sent"
            call.outcomes.append(kind)
        return kind

    def forwarded(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls.values() if {"sent", "lost"} & set(c.outcomes)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
