"""status's judgements, as pure functions: configuration drift and the heartbeat's age.

Owns the comparison of the three places a transactor configuration is named (issue 13): the pin
the instances run (`<SSM version>:<keyed digest>`, the user data's CONFIG_PIN of their launch
template version), what SSM holds (the parameter's version and the keyed digest its Description
keeps), and the local transactor file (its recorded version and its keyed digest); and where the
transactor publishes its heartbeat metric and the age of its latest datapoint.

Pure: no AWS, no clock (the caller passes `now`), no printing. app/status.py reads, this decides.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from datomic_aws.user_data import parse_user_data

# How much of a keyed digest the text shows (the JSON has it whole; it reveals nothing without
# the key that only the file and the SSM value hold).
SHORT = 12


@dataclass(frozen=True)
class Pin:
    """A configuration as the tool names it: the SSM parameter version and the keyed digest."""

    version: int | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> Pin:
        """`3:<hex>` (the template's ConfigPin); `None:None` (an unpinned file) gives Nones."""
        version, _, digest = text.partition(":")
        return cls(
            int(version) if version.isdigit() else None,
            digest if digest and digest != "None" else None,
        )

    def text(self) -> str:
        digest = self.digest[:SHORT] if self.digest else "(no digest)"
        version = "?" if self.version is None else str(self.version)
        return f"version {version}, hmac-sha256 {digest}"

    def doc(self) -> dict[str, Any]:
        return {"version": self.version, "digest": self.digest}


@dataclass(frozen=True)
class BootConstants:
    """What a launch template version's user data names: the configuration it pins and where."""

    pin: Pin
    parameter: str | None
    region: str | None
    system: str | None


def boot_constants(user_data_b64: str) -> BootConstants | None:
    """The boot script's constants from a launch template version's UserData (base64, as EC2
    answers it); None when it holds none (not our boot script)."""
    try:
        text = base64.b64decode(user_data_b64, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    values = parse_user_data(text)
    if "CONFIG_PIN" not in values:
        return None
    return BootConstants(
        Pin.parse(values["CONFIG_PIN"]),
        values.get("SSM_PARAMETER") or None,
        values.get("CONFIG_REGION") or None,
        values.get("SYSTEM") or None,
    )


def configuration_drift(
    running: Mapping[str, Pin],
    stored: Pin | None,
    local: Pin | None,
    *,
    parameter: str,
    local_path: str | None = None,
) -> list[str]:
    """Why the configuration is not in sync; [] when it is. `running` maps each launch template
    version an instance runs to the pin it carries; `stored` is SSM's (None: no parameter);
    `local` the transactor file's (None: not given)."""
    reasons = []
    if stored is None:
        reasons.append(f"the SSM parameter {parameter} does not exist")
    elif stored.digest is None:
        reasons.append(
            f"the SSM parameter {parameter} has no keyed digest in its Description (written by "
            "hand?); run ensure-transactor"
        )
    for version, pin in sorted(running.items()):
        if stored is not None and pin != stored:
            reasons.append(
                f"instances on launch template version {version} run configuration "
                f"{pin.text()}, SSM holds {stored.text()}: run apply (or create-cf-template and "
                "update-stack) to roll them"
            )
    if local is not None and stored is not None and local != stored:
        reasons.append(
            f"the local file {local_path} has configuration {local.text()}, SSM holds "
            f"{stored.text()}: run ensure-transactor"
        )
    return reasons


def distinct_versions(versions: Iterable[str | None]) -> list[str]:
    """The numbered launch template versions among `versions`, once each, in order."""
    return sorted({v for v in versions if v and v.isdigit()}, key=int)


@dataclass(frozen=True)
class HeartbeatMetric:
    """Where the transactor publishes its HeartbeatMsec metric: the CloudWatch region and the
    value of its one dimension (names.METRICS_DIMENSION)."""

    region: str
    dimension_value: str


def heartbeat_metric(values: Mapping[str, str], system: str) -> HeartbeatMetric | None:
    """The transactor properties' metrics target; None when aws-cloudwatch-region is unset (then
    Datomic publishes no metrics). Without aws-cloudwatch-dimension-value, the system name (the
    value config/transactor.py and the observability alarms take for the system)."""
    region = values.get("aws-cloudwatch-region", "").strip()
    if not region:
        return None
    return HeartbeatMetric(
        region, values.get("aws-cloudwatch-dimension-value", "").strip() or system
    )


def metric_window(now: float, period: int, periods: int) -> tuple[float, float]:
    """The `periods` whole periods before `now` and the one it is in (epoch seconds), aligned on
    the period as CloudWatch aligns its datapoints."""
    end = (now // period + 1) * period
    return end - (periods + 1) * period, end


def metric_age(timestamps: Iterable[datetime], now: float) -> float | None:
    """Seconds since the start of the latest datapoint's period (never negative: two machines'
    clocks may disagree); None without a datapoint."""
    latest = max(timestamps, default=None)
    if latest is None:
        return None
    return round(max(0.0, now - latest.timestamp()), 1)
