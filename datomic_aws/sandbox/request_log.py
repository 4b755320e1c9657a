"""What the embedded AWS was asked: every API request it served, reduced to what identifies it.

Owns `RequestLog` (a bounded, thread-safe record) and `identify` (a WSGI environ -> `Seen`: the
service, region, operation and a canonical form of the parameters). Two requests with the same
`Seen` asked the same thing: the benchmark uses this to show that a no-op command reads nothing
twice. Only the parameters are kept, never a header, a signature or a credential; an S3 request's
body (an object, a template) is not read at all.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl

_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/([^/,]+)/([^/,]+)/aws4_request")
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Seen:
    service: str
    region: str
    operation: str  # the API's name (Action, X-Amz-Target), or "METHOD ?subresource" for REST
    parameters: str  # canonical: the same text = the same request
    read: bool  # asks, changes nothing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back for moto."""
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(size) if size else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _is_read(operation: str) -> bool:
    from datomic_aws.aws import is_mutating

    if " " in operation:  # REST (S3): GET and HEAD ask
        return operation.split(" ", 1)[0] in ("GET", "HEAD")
    return not is_mutating(operation)


def identify(environ: dict[str, Any]) -> Seen | None:
    """The request in `environ`, or None when it is no signed AWS API request."""
    scope = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if scope is None:
        return None
    region, service = scope.group(1), scope.group(2)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:  # JSON protocols: the operation in a header, the parameters a JSON body
        operation = str(target).rsplit(".", 1)[-1]
        body = _body(environ)
        try:
            parameters = json.dumps(json.loads(body or b"{}"), sort_keys=True)
        except ValueError:
            parameters = body.decode("utf-8", "replace")
    elif str(environ.get("CONTENT_TYPE", "")).startswith(_FORM):  # query protocol: a form
        fields = parse_qsl(_body(environ).decode("utf-8", "replace"), keep_blank_values=True)
        values = dict(fields)
        operation = values.pop("Action", "?")
        values.pop("Version", None)
        parameters = json.dumps(sorted(values.items()))
    else:  # REST (S3): the method, the path and the query say what is asked
        query = sorted(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        operation = f"{method} ?{'&'.join(k for k, _ in query)}" if query else f"{method} /"
        parameters = json.dumps([str(environ.get("PATH_INFO", "")), query])
    return Seen(service, region, operation, parameters, _is_read(operation))


class RequestLog:
    """The last `limit` requests served, oldest first."""

    def __init__(self, limit: int = 20000) -> None:
        self._lock = threading.Lock()
        self._seen: deque[Seen] = deque(maxlen=limit)

    def record(self, environ: dict[str, Any]) -> None:
        seen = identify(environ)
        if seen is not None:
            with self._lock:
                self._seen.append(seen)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def entries(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)
