"""AwsContext.cancel(): the interrupted (main) thread keeps its calls for its own cleanup; every
other thread's next call, or next retry attempt, raises Interrupted before it is sent."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError
from moto import mock_aws

from datomic_aws.aws import AwsContext
from datomic_aws.errors import ExitCode, Interrupted


def test_a_cancelled_context_stops_other_threads_at_their_next_call() -> None:
    with mock_aws():
        ctx = AwsContext()
        sts = ctx.client("sts", "us-east-1")
        sts.get_caller_identity()
        ctx.cancel()
        assert ctx.cancelled
        sts.get_caller_identity()  # the cancelling thread: its cleanup goes on
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(sts.get_caller_identity)
            with pytest.raises(Interrupted) as err:
                future.result()
        assert err.value.exit_code == ExitCode.INTERRUPTED
        # Refused before it was counted: the log holds the calls that were made.
        assert ctx.call_log.calls["sts:GetCallerIdentity"] == 2


def test_a_retry_attempt_after_the_cancel_is_not_sent() -> None:
    """A call in flight when the interrupt comes fails (here: a throttled first attempt); its
    retry is an attempt of the same call, stopped by the per-attempt check."""
    attempts: list[str] = []
    ctx: AwsContext

    def throttle_then_cancel(request: Any, **_: Any) -> Any:
        attempts.append(request.url)
        # The signal comes (to another thread) while this attempt is on the wire, which then fails
        # in a way botocore retries.
        interrupt = threading.Thread(target=ctx.cancel)
        interrupt.start()
        interrupt.join()
        raise ConnectionClosedError(endpoint_url=request.url)

    with mock_aws():
        ctx = AwsContext(hooks=[("before-send", throttle_then_cancel)])
        sts = ctx.client("sts", "us-east-1")
        with pytest.raises(Interrupted):
            sts.get_caller_identity()
    assert len(attempts) == 1
