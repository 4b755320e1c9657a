"""The only place a (botocore) session and its clients are built.

Owns credentials (standard chain, profile), endpoint override (moto, LocalStack), botocore retry
configuration, the per-run log of AWS calls (what `--output json` reports and tests count), the
dry-run write guard, the cancellation flag an interrupt sets (checked before every call and every
retry, so worker threads stop at their next call), the gate a caller can put in front of every call
of its thread (the stack lock takes itself there, lazily), and the marks it puts on failed answers
(the action, for aws_errors.py to read). It must not decide anything about resources: the resource modules take the clients it
builds.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from datomic_aws import __version__
from datomic_aws.aws_errors import ACTION_KEY, is_unreadable_answer
from datomic_aws.errors import CredentialsError, DryRunViolation, Interrupted

if TYPE_CHECKING:
    import botocore.session
    from mypy_boto3_autoscaling.client import AutoScalingClient
    from mypy_boto3_cloudformation.client import CloudFormationClient
    from mypy_boto3_cloudwatch.client import CloudWatchClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_iam.client import IAMClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_ssm.client import SSMClient
    from mypy_boto3_sts.client import STSClient

    from datomic_aws.aws_models import ModelCache

# Read-only operations by name prefix; everything else counts as mutating. Every AWS read API we
# use starts with one of these.
_READ_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "Validate")

Hook = tuple[str, Callable[..., Any]]
# Called before every AWS call of the thread that installed it: (`service:Operation`, mutating).
Gate = Callable[[str, bool], None]


def is_mutating(operation: str) -> bool:
    return not operation.startswith(_READ_PREFIXES)


class CallLog:
    """Counts AWS API calls (once per call, not per retry) by `service:Operation`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def record(self, service: str, operation: str) -> None:
        with self._lock:
            self.calls[f"{service}:{operation}"] += 1

    def mutating(self) -> dict[str, int]:
        return {k: v for k, v in sorted(self.calls.items()) if is_mutating(k.split(":", 1)[1])}

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": sum(self.calls.values()),
            "mutating": sum(self.mutating().values()),
            "by_operation": dict(sorted(self.calls.items())),
        }


@dataclass
class AwsContext:
    """Session factory for one command run.

    `read_only` turns on the dry-run guard: any mutating call raises before it is sent, except the
    operations named in `allowed_writes` (e.g. a CloudFormation change set that only describes).
    `hooks` are botocore event handlers registered before any client exists, because clients copy
    the session's event emitter when they are built. `command` and `lock_timeout` describe the run
    to the stack lock (its owner record, how long to wait for another run).

    `cancel()` (the CLI's signal handler calls it) makes every later call and retry attempt of any
    *other* thread raise `Interrupted` before it is sent: Python delivers an interrupt only to the
    main thread, which unwinds (restoring what it must, through its own calls), while the workers
    of a parallel phase would otherwise carry on writing. A context whose command runs in a worker
    thread (`apply DIR...`: one folder per thread) names that thread `runner`: the runner gets one
    `Interrupted`, as the main thread gets its KeyboardInterrupt, and its unwinding's own calls
    then go through, so that a raised group's sizes and the stack lock are restored there too.
    """

    profile: str | None = None
    endpoint_url: str | None = None
    read_only: bool = False
    allowed_writes: frozenset[str] = frozenset()
    hooks: Iterable[Hook] = ()
    max_attempts: int = 10
    call_log: CallLog = field(default_factory=CallLog)
    command: str = ""
    lock_timeout: float = 600.0
    # What this run has converged already and need not verify again (the templates bucket of an
    # account and region): state of the run, never of AWS, so a new run starts empty.
    converged: set[str] = field(default_factory=set)
    _session: Any = field(default=None, init=False, repr=False)
    _clients: dict[tuple[str, str, str | None], Any] = field(
        default_factory=dict, init=False, repr=False
    )
    _account: str | None = field(default=None, init=False, repr=False)
    _models: ModelCache | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _cancelled_by: int | None = field(default=None, init=False, repr=False)
    runner: int | None = field(default=None, init=False, repr=False)
    _runner_told: bool = field(default=False, init=False, repr=False)
    _gate: tuple[int, Gate] | None = field(default=None, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def session(self) -> botocore.session.Session:
        with self._lock:
            return self._session_locked()

    def _session_locked(self) -> botocore.session.Session:
        if self._session is None:
            # botocore's own session, not boto3's: clients are all this tool builds, and boto3
            # (its resources, its S3 transfer methods injected into every S3 client) costs ~40 ms
            # of every run's start-up.
            import botocore
            import botocore.exceptions
            import botocore.session

            from datomic_aws.aws_models import ModelCache, models_folder

            session = botocore.session.get_session()
            self._models = ModelCache(session, models_folder(botocore.__version__))
            if self.profile is not None:
                session.set_config_variable("profile", self.profile)
            try:
                # An unknown profile fails now (as boto3.Session(profile_name=...) did), not at
                # the first call.
                session.get_scoped_config()
            except botocore.exceptions.ProfileNotFound as exc:
                raise CredentialsError(str(exc)) from exc
            ours: list[Hook] = [
                ("before-call.*.*", self._before_call),
                ("before-send", self._before_send),
                ("before-parse.*.*", _refuse_html),
                ("after-call.*.*", _name_failed_action),
                ("after-call-error", self._name_unreadable_answer),
            ]
            for event, handler in (*ours, *self.hooks):
                session.register(event, handler)
            self._session = session
        return self._session  # type: ignore[no-any-return]

    @overload
    def client(
        self, service: Literal["autoscaling"], region: str, endpoint_url: str | None = None
    ) -> AutoScalingClient: ...

    @overload
    def client(
        self, service: Literal["cloudformation"], region: str, endpoint_url: str | None = None
    ) -> CloudFormationClient: ...

    @overload
    def client(
        self, service: Literal["cloudwatch"], region: str, endpoint_url: str | None = None
    ) -> CloudWatchClient: ...

    @overload
    def client(
        self, service: Literal["dynamodb"], region: str, endpoint_url: str | None = None
    ) -> DynamoDBClient: ...

    @overload
    def client(
        self, service: Literal["ec2"], region: str, endpoint_url: str | None = None
    ) -> EC2Client: ...

    @overload
    def client(
        self, service: Literal["iam"], region: str, endpoint_url: str | None = None
    ) -> IAMClient: ...

    @overload
    def client(
        self, service: Literal["kms"], region: str, endpoint_url: str | None = None
    ) -> KMSClient: ...

    @overload
    def client(
        self, service: Literal["s3"], region: str, endpoint_url: str | None = None
    ) -> S3Client: ...

    @overload
    def client(
        self, service: Literal["ssm"], region: str, endpoint_url: str | None = None
    ) -> SSMClient: ...

    @overload
    def client(
        self, service: Literal["sts"], region: str, endpoint_url: str | None = None
    ) -> STSClient: ...

    def client(self, service: str, region: str, endpoint_url: str | None = None) -> Any:
        """A cached client; `endpoint_url` overrides the run's endpoint (DynamoDB Local)."""
        with self._lock:
            key = (service, region, endpoint_url)
            if key not in self._clients:
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": self.max_attempts},
                    user_agent_extra=f"datomic-aws/{__version__}",
                    connect_timeout=10,
                    read_timeout=60,
                )
                self._clients[key] = self._session_locked().create_client(
                    service,
                    region_name=region,
                    endpoint_url=endpoint_url or self.endpoint_url,
                    config=config,
                )
                if self._models is not None:
                    self._models.remember(service)
            return self._clients[key]

    def account_id(self, region: str) -> str:
        if self._account is None:
            import botocore.exceptions

            try:
                self._account = str(self.client("sts", region).get_caller_identity()["Account"])
            except (
                botocore.exceptions.NoCredentialsError,
                botocore.exceptions.PartialCredentialsError,
            ) as exc:
                raise CredentialsError(str(exc)) from exc
        return self._account

    def learn_account(self, arn: str) -> None:
        """The account of `arn` (arn:partition:service:region:account:resource), a resource this
        run found by name with its own credentials, so in its own account: `account_id` then
        asks STS nothing."""
        parts = arn.split(":", 5)
        if len(parts) == 6 and parts[0] == "arn" and len(parts[4]) == 12 and parts[4].isdigit():
            with self._lock:
                self._account = self._account or parts[4]

    def cancel(self) -> None:
        """Stop every other thread at its next AWS call or retry (see the class docstring)."""
        self._cancelled_by = threading.get_ident()
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _check_cancelled(self) -> None:
        if not self._cancelled.is_set():
            return
        me = threading.get_ident()
        if me == self._cancelled_by:
            return
        if me == self.runner:
            with self._lock:
                told, self._runner_told = self._runner_told, True
            if told:
                return
        raise Interrupted(
            "interrupted", "", "rerun the same command to converge; it is safe to repeat"
        )

    @contextmanager
    def gated(self, gate: Gate) -> Iterator[None]:
        """Call `gate` before every AWS call this thread makes inside the block (not in calls the
        gate makes itself). The gate may raise to stop the call before it is sent."""
        previous = self._gate
        self._gate = (threading.get_ident(), gate)
        try:
            yield
        finally:
            self._gate = previous

    def _before_call(self, model: Any, **_: Any) -> None:
        self._check_cancelled()
        service = model.service_model.endpoint_prefix
        operation = str(model.name)
        action = f"{service}:{operation}"
        gate = self._gate
        ours = gate is not None and gate[0] == threading.get_ident()
        if gate is not None and ours and not getattr(self._local, "in_gate", False):
            self._local.in_gate = True
            try:
                gate[1](action, is_mutating(operation))
            finally:
                self._local.in_gate = False
        self._local.action = action
        self.call_log.record(service, operation)
        if self.read_only and is_mutating(operation) and action not in self.allowed_writes:
            raise DryRunViolation(action)

    def _before_send(self, **_: Any) -> None:
        # Once per attempt: a retry of a call in flight when the interrupt came is not sent either.
        self._check_cancelled()

    def _name_unreadable_answer(self, exception: BaseException, **_: Any) -> None:
        action = getattr(self._local, "action", None)
        if action and is_unreadable_answer(exception):
            with contextlib.suppress(AttributeError, TypeError):
                exception.datomic_aws_action = action  # type: ignore[attr-defined]


def _refuse_html(operation_model: Any, response_dict: Any, **_: Any) -> None:
    """An HTML page is never an AWS API answer: a proxy or a captive portal answered instead.
    Checked before botocore parses it: the JSON parser turns a page into nonsense without
    complaint, and the XML parser turns a well-formed (XHTML) page into a KeyError. (By its body:
    moto labels some of its XML answers text/html.) botocore's Stubber answers without a
    response to parse, so it never reaches this."""
    if operation_model.has_streaming_output or not isinstance(response_dict, dict):
        return  # a streamed body (S3 GetObject) is the caller's to read, and it is read once
    body = response_dict.get("body") or b""
    if not isinstance(body, bytes):
        return
    if not body[:512].lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return
    if int(response_dict.get("status_code") or 0) >= 500:
        # A 5xx page (a proxy's 502 or 503) is a transient failure, retried by botocore's standard
        # mode (500/502/503/504). botocore reads a 5xx with an empty body as a generic error of
        # that status, but recognises a page only by a leading `<html>`, not a doctype.
        response_dict["body"] = b""
        return
    import botocore.parsers

    exc = botocore.parsers.ResponseParserError(
        f"HTTP {response_dict.get('status_code')} answer is an HTML page, not an AWS "
        "response:\n" + body[:2000].decode("utf-8", "replace")
    )
    service = operation_model.service_model.endpoint_prefix
    exc.datomic_aws_action = f"{service}:{operation_model.name}"  # type: ignore[attr-defined]
    raise exc


def _name_failed_action(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
    if http_response is not None and http_response.status_code >= 300 and isinstance(parsed, dict):
        parsed[ACTION_KEY] = f"{model.service_model.endpoint_prefix}:{model.name}"
