"""The boot script as user data: the packaged datomic_aws/boot/transactor-boot.sh with its
constants filled in, as an instance receives it (`render_boot_script`) and as the template's
Fn::Sub body (`user_data_sub`), and the reading back of those constants (`parse_user_data`, for
status and the emulated transactors). Pure: no AWS call, no clock. It must never put a transactor
configuration value or a secret in the script: the instance reads its configuration from SSM at the
pinned version (template.py's docstring says what is embedded).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from importlib import resources

from datomic_aws import names, template_observe
from datomic_aws.config.cf import CfSpec
from datomic_aws.config.download import pinned_sha256
from datomic_aws.config.transactor import TransactorSpec, config_pin

LAUNCH_HOOK_NAME = names.LAUNCH_HOOK_NAME
# The script gives up a little earlier than Auto Scaling, counted from its own start, so the failure
# is logged by the instance (and reported with ABANDON) even without a single heartbeat.
READY_TIMEOUT_SECONDS = 780
HEARTBEAT_EVERY_SECONDS = 60
# How often the script checks readiness, and the instance re-reads its role for the role tag.
POLL_SECONDS = 5
ROLE_POLL_SECONDS = 5


class _BootTemplate(string.Template):
    """`@@NAME` placeholders: plain words to bash and shellcheck, never confused with `$x`."""

    delimiter = "@@"
    idpattern = r"[A-Z][A-Z0-9_]*"
    flags = re.RegexFlag(
        0
    )  # upper-case only: `@@` followed by anything else is an error, not a silent no-op


# Values that come from stack parameters: in the template they are `${Param}` for Fn::Sub, so the
# console or `update-stack` can change them without regenerating the template.
_PARAMETER_PLACEHOLDERS = {
    "XMX": "Xmx",
    "JAVA_OPTS": "JavaOpts",
    "DATOMIC_VERSION": "DatomicVersion",
}


def boot_script_source() -> str:
    return resources.files("datomic_aws.boot").joinpath("transactor-boot.sh").read_text("utf-8")


def _shipped_source(cf: CfSpec) -> str:
    """The script as instances receive it (with the log-shipping step when logs are on): its
    comment lines left out (shebangs kept). EC2 refuses user data over 16 KB (raw, before
    base64); the why-comments stay in the packaged file."""
    lines = template_observe.with_log_shipping(boot_script_source(), cf).splitlines(keepends=True)
    return "".join(ln for ln in lines if not ln.lstrip().startswith("#") or ln[:2] == "#!")


def _quote(value: str) -> str:
    """Single-quoted for bash; the schema keeps quotes out of the values, this keeps it safe."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


# The constants the rendered boot script keeps one per line (the shared user data layout), read
# back by status and by the embedded AWS's emulated transactors.
_CONSTANT = re.compile(r"^readonly ([A-Z][A-Z0-9_]*)='((?:[^']|'\"'\"')*)'[ \t]*$", re.MULTILINE)


def parse_user_data(text: str) -> dict[str, str]:
    """`readonly NAME='value'` lines of the boot script -> {NAME: value} (_quote undone)."""
    return {m.group(1): m.group(2).replace("'\"'\"'", "'") for m in _CONSTANT.finditer(text)}


def _escape_for_sub(text: str) -> str:
    """Fn::Sub reads `${x}` as a reference; `${!x}` is CloudFormation's escape for a literal."""
    return text.replace("${", "${!")


@dataclass(frozen=True)
class BootTimings:
    """The boot script's clock: the defaults are what instances get; tests render shorter ones."""

    ready_timeout_seconds: int = READY_TIMEOUT_SECONDS
    poll_seconds: float = POLL_SECONDS
    heartbeat_every_seconds: int = HEARTBEAT_EVERY_SECONDS
    role_poll_seconds: float = ROLE_POLL_SECONDS


_DEFAULT_TIMINGS = BootTimings()


def _constants(
    transactor: TransactorSpec, cf: CfSpec, timings: BootTimings = _DEFAULT_TIMINGS
) -> dict[str, str]:
    return {
        "SYSTEM": transactor.system,
        "CONFIG_REGION": transactor.region,
        "SSM_PARAMETER": names.ssm_parameter(transactor.system),
        "GROUP_NAME": names.autoscaling_group(transactor.system),
        "HOOK_NAME": LAUNCH_HOOK_NAME,
        "ROLE_TAG": names.TAG_ROLE,
        "ROLE_ACTIVE": names.ROLE_ACTIVE,
        "ROLE_STANDBY": names.ROLE_STANDBY,
        "DOWNLOAD_URL": cf.download_url or "",
        "ZIP_SHA256": pinned_sha256(cf.download_url, cf.zip_sha256, cf.datomic_version) or "",
        "READY_TIMEOUT_SECONDS": str(timings.ready_timeout_seconds),
        "POLL_SECONDS": f"{timings.poll_seconds:g}",
        "HEARTBEAT_EVERY_SECONDS": str(timings.heartbeat_every_seconds),
        "ROLE_POLL_SECONDS": f"{timings.role_poll_seconds:g}",
        **template_observe.boot_constants(transactor, cf),
    }


def _parameter_defaults(cf: CfSpec) -> dict[str, str]:
    return {
        "XMX": cf.java_xmx or "",
        "JAVA_OPTS": cf.java_opts or "",
        "DATOMIC_VERSION": cf.datomic_version or "",
    }


def render_boot_script(
    transactor: TransactorSpec, cf: CfSpec, timings: BootTimings = _DEFAULT_TIMINGS
) -> str:
    """The script an instance receives when the stack runs with the template's default parameters."""
    values = {
        **_constants(transactor, cf, timings),
        **_parameter_defaults(cf),
        "CONFIG_PIN": config_pin(transactor),
    }
    return _BootTemplate(_shipped_source(cf)).substitute(
        {key: _quote(value) for key, value in values.items()}
    )


def user_data_sub(transactor: TransactorSpec, cf: CfSpec) -> str:
    """The Fn::Sub body of the user data: the same script, parameters left as `${Param}`."""
    values = {k: _escape_for_sub(_quote(v)) for k, v in _constants(transactor, cf).items()}
    values.update({k: _quote("${" + p + "}") for k, p in _PARAMETER_PLACEHOLDERS.items()})
    # The Fn::Sub variable holding the pin: the script's text does not change with the configuration.
    values["CONFIG_PIN"] = _quote("${ConfigPin}")
    return _BootTemplate(_escape_for_sub(_shipped_source(cf))).substitute(values)
