"""Request serialisation: every moto request, in process (`mock_aws`) and served, runs under a
lock, so that moto's models (not thread safe) and the Auto Scaling clock never interleave.

Owns `patch_serialised_requests`; it must not change what a request does, only when it runs.
"""

from __future__ import annotations

from typing import Any

from datomic_aws.sandbox.moto_fixes._registry import DYNAMODB_LOCK, MOTO_LOCK, replace


def _lock_for(target: object) -> Any:
    return DYNAMODB_LOCK if str(target or "").startswith("DynamoDB_") else MOTO_LOCK


def patch_serialised_requests() -> None:
    """AWS: each API call is atomic with respect to the others; of two DynamoDB conditional writes
    made at once on one item, exactly one succeeds.

    moto serves a server's requests on one thread each and its models are not thread safe: two
    conditional PutItems may both pass their check, and the Auto Scaling clock (`clock`) would
    change a group while a request reads it. Correction: every request, in-process (`mock_aws`) and
    served, runs under a lock: DynamoDB's own, or `MOTO_LOCK`, which the clock shares.
    """
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    stubber_cls: Any = BotocoreStubber
    app_cls: Any = DomainDispatcherApplication
    original_stub = stubber_cls.__call__
    original_app = app_cls.__call__

    def stubbed(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        with _lock_for(request.headers.get("X-Amz-Target")):
            return original_stub(self, event_name, request, **kwargs)

    def served(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        with _lock_for(environ.get("HTTP_X_AMZ_TARGET")):
            return original_app(self, environ, start_response)

    replace(stubber_cls, "__call__", original_stub, stubbed)
    replace(app_cls, "__call__", original_app, served)
