"""The embedded AWS: moto (with the corrections) on 127.0.0.1, optionally running transactors.

Owns `EmbeddedAws` (the server the demo, `sandbox serve` and tests/moto_server.py all start), its control API for
tests on the same port (`/_sandbox/...`, JSON; `SandboxControl` is its client), the record of the
requests it served (`request_log`), the reset that
also stops every emulated transactor and clears the probe, `masked_aws_environment` (throw-away
credentials while the demo runs).

It listens on 127.0.0.1 only (never 0.0.0.0) and never talks to real AWS.

Control API, always on:
  GET  /_sandbox/requests         the AWS requests served (request_log.Seen): what the benchmark
                                  reads to show that a no-op command asks nothing twice
  POST /_sandbox/requests/clear   start a new record
Control API, only with transactors on (404 otherwise):
  GET  /_sandbox/transactors      every emulated transactor's state
  GET  /_sandbox/settings         POST it with a JSON object to change boot_seconds,
                                  ready_deadline, die_at_start (next N boots), never_ready (next N)
  GET  /_sandbox/probe            {"summary": ..., "timeline": [...]}
  POST /_sandbox/probe/clear      start a new recording
  POST /moto-api/reset            moto's reset, after stopping every transactor and clearing the
                                  probe and the faults
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datomic_aws.app.signals import background_thread
from datomic_aws.errors import UsageError
from datomic_aws.sandbox.request_log import RequestLog

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_SESSION_TOKEN": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_MASKED = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
CONTROL = "/_sandbox/"


def _require_moto() -> None:
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            "the embedded AWS needs moto, which is not installed",
            "",
            "pip install 'datomic-aws[sandbox]'",
        ) from exc


class EmbeddedAws:
    """moto with the corrections, served on 127.0.0.1; with `transactors`, every instance its Auto
    Scaling launches runs an emulated transactor, watched by a probe."""

    def __init__(self, *, transactors: bool = False, settings: Any = None, port: int = 0) -> None:
        _require_moto()
        from datomic_aws.sandbox import moto_fixes

        moto_fixes.patch_moto()
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self._moto_app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", port, self._app, threaded=True, request_handler=MotoRequestHandler
        )
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.emulation: Any = None
        self.probe: Any = None
        self.requests = RequestLog()
        if transactors:
            from datomic_aws.sandbox.probe import Probe
            from datomic_aws.sandbox.transactors import Emulation

            self.emulation = Emulation(self.endpoint, settings)
            self.probe = Probe(self.emulation)
        # Its request threads, and the emulated transactors moto's requests start, inherit the
        # server thread's signal mask: SIGINT and SIGTERM reach the main thread (app/signals.py).
        self._thread = background_thread(self._server.serve_forever, name="embedded-aws")

    def start(self) -> EmbeddedAws:
        self._thread.start()
        if self.emulation is not None:
            self.emulation.install()
            self.probe.start()
        return self

    def stop(self) -> None:
        if self.emulation is not None:
            self.probe.stop()
            self.emulation.uninstall()
        self._server.shutdown()
        self._thread.join(10)

    def __enter__(self) -> EmbeddedAws:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Stop every transactor and clear the probe (moto's own reset follows on the request)."""
        if self.emulation is not None:
            self.emulation.reset()
            self.probe.reset()

    # --- WSGI ---

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        if path.startswith(CONTROL):
            status, document = self._control(method, path[len(CONTROL) :], environ)
            body = json.dumps(document).encode()
            start_response(
                status,
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        if path.rstrip("/") == "/moto-api/reset" and method == "POST":
            # Before moto forgets the instances: no transactor may act on the new state.
            self.reset()
        self.requests.record(environ)
        return self._moto_app(environ, start_response)

    def _control(self, method: str, route: str, environ: dict[str, Any]) -> tuple[str, Any]:
        route = route.strip("/")
        if route == "requests" and method == "GET":
            return "200 OK", [seen.as_dict() for seen in self.requests.entries()]
        if route == "requests/clear" and method == "POST":
            self.requests.clear()
            return "200 OK", {}
        if self.emulation is None:
            return "404 Not Found", {"error": "this embedded AWS runs no transactors"}
        route = route.strip("/")
        if route == "transactors" and method == "GET":
            return "200 OK", self.emulation.snapshot()
        if route == "settings":
            try:
                if method == "POST":
                    size = int(environ.get("CONTENT_LENGTH") or 0)
                    values = json.loads(environ["wsgi.input"].read(size) or b"{}")
                    self.emulation.configure(**values)
            except (ValueError, TypeError) as exc:
                return "400 Bad Request", {"error": str(exc)}
            from datomic_aws.sandbox.transactors import settings_dict

            return "200 OK", settings_dict(self.emulation.settings)
        if route == "probe" and method == "GET":
            return "200 OK", self.probe.report()
        if route == "probe/clear" and method == "POST":
            self.probe.clear()
            return "200 OK", {}
        return "404 Not Found", {"error": f"no {method} {CONTROL}{route}"}


class SandboxControl:
    """The control API's client (tests, the demo in another process)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")

    def _call(self, method: str, route: str, document: Any = None) -> Any:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(
            f"{self.endpoint}{route}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body and route.startswith(CONTROL) else None

    def settings(self, **values: Any) -> dict[str, Any]:
        """Change settings (boot_seconds, ready_deadline, die_at_start, never_ready); the result."""
        result: dict[str, Any] = self._call(
            "POST" if values else "GET", f"{CONTROL}settings", values or None
        )
        return result

    def transactors(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"{CONTROL}transactors")
        return result

    def probe(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"{CONTROL}probe")
        return result

    def clear_probe(self) -> None:
        self._call("POST", f"{CONTROL}probe/clear", {})

    def requests(self) -> list[dict[str, Any]]:
        """The AWS requests served since the last `clear_requests` (request_log.Seen, as dicts)."""
        result: list[dict[str, Any]] = self._call("GET", f"{CONTROL}requests")
        return result

    def clear_requests(self) -> None:
        self._call("POST", f"{CONTROL}requests/clear", {})

    def reset(self) -> None:
        self._call("POST", "/moto-api/reset", {})


@contextmanager
def masked_aws_environment() -> Iterator[None]:
    """Throw-away credentials and no profile, config file or endpoint of the operator's while the
    sandbox runs; everything put back afterwards."""
    saved = {k: os.environ.get(k) for k in (*_FAKE_ENV, *_MASKED)}
    with tempfile.TemporaryDirectory(prefix="datomic-aws-sandbox-home-") as home:
        os.environ.update(_FAKE_ENV)
        for key in _MASKED:
            os.environ.pop(key, None)
        # No stray ~/.aws profile can leak into the sandbox.
        os.environ["AWS_CONFIG_FILE"] = str(Path(home) / "config")
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(Path(home) / "credentials")
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def embedded_aws(
    *, transactors: bool = False, settings: Any = None, port: int = 0
) -> Iterator[EmbeddedAws]:
    """The embedded AWS for the duration of the block, with the operator's AWS settings masked;
    on 127.0.0.1:`port` (0: a free port)."""
    _require_moto()
    with masked_aws_environment():
        # werkzeug logs every request to stderr, which would drown the demo's narration.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        with EmbeddedAws(transactors=transactors, settings=settings, port=port) as aws:
            yield aws
