"""Emulated Datomic transactors on the instances the embedded Auto Scaling launches.

Owns `Emulation` (what runs on every launched instance while it is installed: one `Transactor`
thread per instance, until the instance is terminated), the test faults (the next N boots die at
start or never become ready), and the storage the HA protocol runs against (the embedded DynamoDB
table of `aws-dynamodb-table` for `protocol=ddb`, an in-memory lease for any other protocol).

An emulated transactor behaves as reference §10 says Datomic does and completes its launch
lifecycle action by the boot script's rule (CONTINUE once the process is alive and /health answers,
ABANDON then power-off when it exits first or the deadline passes); the active reports HeartbeatMsec
as Datomic does (metrics.py). It talks to the embedded AWS through boto3 like an instance would;
only what an instance knows about itself without an API (its user data, whether it is still
running, powering itself off) is read from or done to the moto model directly. /health is a state
flag, not a socket. It never gets a real AWS endpoint: its clients are built only with the
embedded endpoint and throw-away credentials.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from datomic_aws import names
from datomic_aws.app.signals import background_thread
from datomic_aws.config.transactor import DIGEST_SECRET_KEY, value_digest
from datomic_aws.sandbox import moto_fixes
from datomic_aws.sandbox.clock import CLOCK
from datomic_aws.sandbox.metrics import HeartbeatMetrics
from datomic_aws.sandbox.storage import DynamoStorage, MemoryStorage, Record, Storage
from datomic_aws.user_data import parse_user_data

if TYPE_CHECKING:
    import boto3.session
    from mypy_boto3_autoscaling.client import AutoScalingClient
    from mypy_boto3_cloudwatch.client import CloudWatchClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ssm.client import SSMClient

DEFAULT_HEARTBEAT_MSEC = 5000

# Why an emulated transactor exited (the probe counts them).
LOST_RACE = "lost takeover race"
LEASE_LOST = "heartbeat failed"
TERMINATED = "instance terminated"
DIED_AT_START = "died at start"
NEVER_READY = "not ready before the deadline"
CONFIG_REFUSED = "the configuration's keyed digest is not the launch template's"
BROKEN = "could not start"


@dataclass
class Settings:
    boot_seconds: float = 0.3  # emulated install + download before the transactor starts
    ready_deadline: float = 10.0  # from the start of the boot, as the boot script counts it
    die_at_start: int = 0  # the next N boots: the process exits at once
    never_ready: int = 0  # the next N boots: alive, but /health never answers


@dataclass
class Exit:
    at: float  # CLOCK.now()
    instance_id: str
    system: str
    reason: str
    role: str | None


@dataclass
class SystemView:
    """What a peer knows of a system: where its heartbeat lives and how often it beats."""

    storage: Storage
    heartbeat: float


class Emulation:
    """Runs a `Transactor` on every instance the embedded Auto Scaling launches while installed."""

    def __init__(self, endpoint_url: str, settings: Settings | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.defaults = settings or Settings()
        self.settings = replace(self.defaults)
        self._lock = threading.Lock()
        self.transactors: dict[str, Transactor] = {}
        self.exits: list[Exit] = []
        self.systems: dict[str, SystemView] = {}
        self._memory: dict[str, MemoryStorage] = {}
        self.on_exit: Callable[[Exit], None] | None = None
        self._session: boto3.session.Session | None = None
        self._session_lock = threading.Lock()

    def install(self) -> None:
        CLOCK.start()
        moto_fixes.set_instance_software(self.launch)

    def uninstall(self) -> None:
        moto_fixes.set_instance_software(None)
        self.stop_all()
        CLOCK.stop()

    def configure(self, **values: Any) -> Settings:
        with self._lock:
            for key, value in values.items():
                if not hasattr(self.settings, key):
                    raise ValueError(f"unknown setting {key!r}")
                kind = type(getattr(self.settings, key))
                setattr(self.settings, key, kind(value))
            return replace(self.settings)

    def launch(self, launched: moto_fixes.Launched) -> None:
        """Called by the embedded Auto Scaling inside the launching request: start a thread only."""
        with self._lock:
            fault = None
            if self.settings.die_at_start > 0:
                self.settings.die_at_start -= 1
                fault = DIED_AT_START
            elif self.settings.never_ready > 0:
                self.settings.never_ready -= 1
                fault = NEVER_READY
            transactor = Transactor(self, launched, fault, replace(self.settings))
            self.transactors[launched.instance_id] = transactor
        transactor.start()

    def stop_all(self) -> None:
        with self._lock:
            running = list(self.transactors.values())
            self.transactors = {}
        for transactor in running:
            transactor.stop()
        for transactor in running:
            transactor.join(10)

    def reset(self) -> None:
        """Stop every transactor; forget exits, systems and faults (POST /moto-api/reset)."""
        self.stop_all()
        with self._lock:
            self.exits = []
            self.systems = {}
            self._memory = {}
            self.settings = replace(self.defaults)

    def storage_for(self, config: dict[str, str], system: str) -> Storage:
        with self._lock:
            if config.get("protocol") == "ddb" and config.get("aws-dynamodb-table"):
                region = config.get("aws-dynamodb-region") or "us-east-1"
                return DynamoStorage(self.dynamodb(region), config["aws-dynamodb-table"])
            return self._memory.setdefault(system, MemoryStorage())

    def register_system(self, system: str, view: SystemView) -> None:
        with self._lock:
            self.systems.setdefault(system, view)

    def exited(self, event: Exit) -> None:
        with self._lock:
            self.exits.append(event)
        if self.on_exit is not None:
            self.on_exit(event)

    def _session_(self) -> boto3.session.Session:
        """One session for every transactor (client creation is fast from a warm session, and
        not thread safe); clients on the embedded endpoint only, never anywhere else."""
        import boto3

        if self._session is None:
            # Throw-away credentials: the embedded endpoint accepts any; no real ones are read.
            self._session = boto3.session.Session(
                aws_access_key_id="sandbox",
                aws_secret_access_key="sandbox",
                aws_session_token="sandbox",
            )
        return self._session

    def ssm(self, region: str) -> SSMClient:
        with self._session_lock:
            return self._session_().client(
                "ssm", region_name=region, endpoint_url=self.endpoint_url
            )

    def dynamodb(self, region: str) -> DynamoDBClient:
        with self._session_lock:
            return self._session_().client(
                "dynamodb", region_name=region, endpoint_url=self.endpoint_url
            )

    def autoscaling(self, region: str) -> AutoScalingClient:
        with self._session_lock:
            return self._session_().client(
                "autoscaling", region_name=region, endpoint_url=self.endpoint_url
            )

    def cloudwatch(self, region: str) -> CloudWatchClient:
        with self._session_lock:
            return self._session_().client(
                "cloudwatch", region_name=region, endpoint_url=self.endpoint_url
            )

    def ec2(self, region: str) -> EC2Client:
        with self._session_lock:
            return self._session_().client(
                "ec2", region_name=region, endpoint_url=self.endpoint_url
            )

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [t.describe() for t in self.transactors.values()]


@dataclass
class _State:
    role: str | None = None
    alive: bool = False
    healthy: bool = False
    completed: str | None = None  # CONTINUE / ABANDON once sent
    exit_reason: str | None = None
    system: str = ""
    heartbeat: float = DEFAULT_HEARTBEAT_MSEC / 1000
    started: float = field(default_factory=lambda: CLOCK.now())


class Transactor:
    """One emulated transactor (and the boot script around it) on one instance."""

    def __init__(
        self,
        emulation: Emulation,
        launched: moto_fixes.Launched,
        fault: str | None,
        settings: Settings,
    ) -> None:
        self.emulation = emulation
        self.launched = launched
        self.instance_id = launched.instance_id
        self.fault = fault
        self.settings = settings
        self.state = _State()
        self._stop = threading.Event()
        self._thread = background_thread(self._main, name=f"transactor-{self.instance_id}")
        self._asg: AutoScalingClient | None = None
        self._ec2_client: EC2Client | None = None
        self._instance: Any = None

    # --- what the outside sees ---

    @property
    def listening(self) -> bool:
        """Only the active binds its port (reference §10)."""
        return self.state.alive and self.state.role == names.ROLE_ACTIVE

    def health(self) -> bool:
        """GET /health answers 2xx (for a standby too, reference §10)."""
        return self.state.alive and self.state.healthy

    def describe(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "group": self.launched.group,
            "system": self.state.system,
            "role": self.state.role,
            "alive": self.state.alive,
            "health": self.health(),
            "listening": self.listening,
            "lifecycle": self.state.completed,
            "exit": self.state.exit_reason,
            "fault": self.fault,
        }

    def instance_running(self) -> bool:
        """What the instance knows of itself: it is still running (no shutdown under way)."""
        if self._instance is None:
            from moto.ec2.models import ec2_backends

            # Looked up once: moto's backend lookup takes a global lock that a backend being
            # created holds for seconds, which would stall heartbeats.
            try:
                backend = ec2_backends[self.launched.account_id][self.launched.region]
                self._instance = backend.get_instance(self.instance_id)
            except Exception:  # gone with a reset
                return False
        return bool(self._instance.is_running())

    # --- thread ---

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            self._boot()
        except Exception as exc:
            if not self._stop.is_set():
                self._exit(f"{BROKEN}: {type(exc).__name__}")

    def _autoscaling(self) -> AutoScalingClient:
        if self._asg is None:
            self._asg = self.emulation.autoscaling(self.launched.region)
        return self._asg

    def _ec2(self) -> EC2Client:
        if self._ec2_client is None:
            self._ec2_client = self.emulation.ec2(self.launched.region)
        return self._ec2_client

    def _boot(self) -> None:
        started = self.state.started
        constants = parse_user_data(self.launched.user_data)
        if self._stop.wait(self.settings.boot_seconds):
            return
        if not self.instance_running():
            self._exit(TERMINATED)
            return
        self.state.system = constants.get("SYSTEM", "")
        # The configuration, as the boot script fetches it (SecureString, decrypted).
        ssm = self.emulation.ssm(constants.get("CONFIG_REGION") or self.launched.region)
        # At the version the launch template pins, refused unless its keyed digest is the pinned one.
        version, _, digest = constants.get("CONFIG_PIN", "").partition(":")
        name = constants["SSM_PARAMETER"] + (f":{version}" if version else "")
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        import javaproperties

        config: dict[str, str] = javaproperties.loads(value)
        if digest and digest != value_digest(value, config.get(DIGEST_SECRET_KEY, "")):
            self._exit(CONFIG_REFUSED)
            return
        heartbeat = int(config.get("heartbeat-interval-msec") or DEFAULT_HEARTBEAT_MSEC) / 1000
        self.state.heartbeat = heartbeat
        storage = self.emulation.storage_for(config, self.state.system)
        metrics = HeartbeatMetrics.of(self.emulation.cloudwatch, config, self.state.system)
        self.emulation.register_system(self.state.system, SystemView(storage, heartbeat))

        self.state.alive = True
        if self.fault == DIED_AT_START:
            self._exit(DIED_AT_START)
            return
        # Datomic starts the health endpoint before its active/standby lifecycle (reference §10).
        self.state.healthy = self.fault != NEVER_READY
        self._run(storage, heartbeat, started, metrics)

    def _run(
        self, storage: Storage, heartbeat: float, started: float, metrics: HeartbeatMetrics
    ) -> None:
        period = heartbeat / 4
        # The takeover's own delay: two standbys that saw the active die at the same tick both
        # write before either sees the other's write, so exactly one wins (reference §10).
        prepare = period / 2
        current: Record | None = None
        last_beat = 0.0
        while not self._stop.is_set():
            if not self.instance_running():
                self._exit(TERMINATED)
                return
            if self.state.role == names.ROLE_ACTIVE:
                if CLOCK.now() - last_beat >= heartbeat * 0.95 and current is not None:
                    beat = Record(self.instance_id, current.seq + 1, CLOCK.now())
                    if not storage.write(beat, current):
                        self._exit(LEASE_LOST)
                        return
                    current, last_beat = beat, beat.stamp
                    metrics.beat()
            else:
                seen = storage.read()
                if seen is None or CLOCK.now() - seen.stamp > 2 * heartbeat:
                    if self._stop.wait(prepare):
                        return
                    claim = Record(self.instance_id, seen.seq + 1 if seen else 1, CLOCK.now())
                    if storage.write(claim, seen):
                        current, last_beat = claim, claim.stamp
                        self._set_role(names.ROLE_ACTIVE)
                        metrics.beat()
                    elif seen is not None:
                        # "Heartbeat failed": the loser of a takeover race fails fast.
                        self._exit(LOST_RACE)
                        return
                    # Two new transactors on an empty storage: the first is active, the other waits.
                if self.state.role is None and self.state.alive and current is None:
                    self._set_role(names.ROLE_STANDBY)
            if not self._lifecycle(started):
                return
            # Ticks on the wall clock, shared by every emulated transactor as NTP would make it.
            self._stop.wait(period - (CLOCK.now() % period))

    def _lifecycle(self, started: float) -> bool:
        """The boot script's rule; False when the transactor gave up."""
        if self.state.completed is not None:
            return True
        if self.health():
            self._complete("CONTINUE")
            return True
        if CLOCK.now() - started > self.settings.ready_deadline:
            self._exit(NEVER_READY)
            return False
        return True

    def _complete(self, result: str) -> None:
        hook = self.launched.held_by_hook
        self.state.completed = result
        if hook is None:
            return
        from botocore.exceptions import ClientError

        # No pending action any more: the boot script logs it and carries on.
        with contextlib.suppress(ClientError):
            self._autoscaling().complete_lifecycle_action(
                AutoScalingGroupName=self.launched.group,
                LifecycleHookName=hook,
                InstanceId=self.instance_id,
                LifecycleActionResult=result,
            )

    def _set_role(self, role: str) -> None:
        if self.state.role == role:
            return
        self.state.role = role
        from botocore.exceptions import ClientError

        with contextlib.suppress(ClientError):  # the instance went meanwhile
            self._ec2().create_tags(
                Resources=[self.instance_id], Tags=[{"Key": names.TAG_ROLE, "Value": role}]
            )

    def _exit(self, reason: str) -> None:
        """The transactor process exits; unless the instance is already gone, the boot script
        abandons a pending launch and the instance powers itself off (fail fast, §10)."""
        role = self.state.role
        self.state.alive = False
        self.state.healthy = False
        self.state.exit_reason = reason
        if self._stop.is_set():
            return
        self.emulation.exited(Exit(CLOCK.now(), self.instance_id, self.state.system, reason, role))
        if reason == TERMINATED:
            return
        if self.state.completed is None:
            self._complete("ABANDON")
        moto_fixes.power_off(self.launched.account_id, self.launched.region, self.instance_id)


def settings_dict(settings: Settings) -> dict[str, Any]:
    return asdict(settings)
