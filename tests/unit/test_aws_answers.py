"""What the AwsContext makes of answers that are not AWS's: an HTML page from a proxy. A 5xx page
is a transient failure that botocore's standard mode retries; any other page is refused at once
(see `aws._refuse_html`). Served by a local HTTP server: botocore's Stubber answers without a
response to parse, so it cannot show either."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from datomic_aws.aws import AwsContext

PAGE = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body></body></html>"
IDENTITY = (
    b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    b"<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/x</Arn>"
    b"<UserId>AIDEXAMPLE</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
    b"<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
)


class _Answers:
    """Per request, the next (status, body); the last one repeats."""

    def __init__(self) -> None:
        self.script: list[tuple[int, bytes]] = []
        self.seen = 0


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, _Answers]]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    answers = _Answers()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = answers.script[min(answers.seen, len(answers.script) - 1)]
            answers.seen += 1
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if body.startswith(b"<!") else "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_proxy_5xx_page_is_retried_as_a_transient_failure(
    server: tuple[str, _Answers], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, answers = server
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda *_: 0)
    answers.script = [(502, PAGE), (503, PAGE), (200, IDENTITY)]
    ctx = AwsContext(endpoint_url=endpoint, max_attempts=3)
    assert ctx.client("sts", "us-east-1").get_caller_identity()["Account"] == "123456789012"
    assert answers.seen == 3


def test_a_5xx_page_that_persists_ends_as_that_status(
    server: tuple[str, _Answers], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, answers = server
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda *_: 0)
    answers.script = [(502, PAGE)]
    ctx = AwsContext(endpoint_url=endpoint, max_attempts=2)
    with pytest.raises(ClientError) as caught:
        ctx.client("sts", "us-east-1").get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "502"
    assert answers.seen == 3  # botocore's `max_attempts` counts the retries after the first


def test_a_page_with_a_success_status_is_refused_at_once(server: tuple[str, _Answers]) -> None:
    endpoint, answers = server
    answers.script = [(200, PAGE)]
    ctx = AwsContext(endpoint_url=endpoint, max_attempts=3)
    with pytest.raises(ResponseParserError, match="HTML page"):
        ctx.client("sts", "us-east-1").get_caller_identity()
    assert answers.seen == 1
