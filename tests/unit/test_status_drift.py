"""status's judgements (app/drift.py): the configuration the instances run against SSM's and the
local file's, the boot constants read back from a launch template's user data, and the heartbeat
metric's place and age against an injected clock."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

from datomic_aws import names, user_data
from datomic_aws.app.drift import (
    HeartbeatMetric,
    Pin,
    boot_constants,
    configuration_drift,
    distinct_versions,
    heartbeat_metric,
    metric_age,
    metric_window,
)
from datomic_aws.config.cf import load_cf
from datomic_aws.config.transactor import config_pin, load_transactor
from tests.unit.test_template import files

PARAMETER = "/datomic/sys/transactor.properties"
A = Pin(3, "a" * 64)
B = Pin(4, "b" * 64)


def test_a_pin_parses_the_templates_config_pin() -> None:
    assert Pin.parse(f"3:{'a' * 64}") == A
    assert Pin.parse("None:None") == Pin(None, None)
    assert Pin.parse("") == Pin(None, None)
    assert A.text() == "version 3, hmac-sha256 aaaaaaaaaaaa"
    assert Pin(None, None).text() == "version ?, hmac-sha256 (no digest)"


def test_in_sync_when_the_instances_ssm_and_the_file_name_one_configuration() -> None:
    assert configuration_drift({"2": A}, A, A, parameter=PARAMETER, local_path="t.properties") == []
    # Without the local file, or with no instance running: only what is there is compared.
    assert configuration_drift({"2": A}, A, None, parameter=PARAMETER) == []
    assert configuration_drift({}, A, None, parameter=PARAMETER) == []


def test_ssm_changed_but_not_rolled_out_is_drift() -> None:
    (reason,) = configuration_drift({"2": A}, B, B, parameter=PARAMETER, local_path="t.properties")
    assert reason == (
        "instances on launch template version 2 run configuration version 3, hmac-sha256 "
        "aaaaaaaaaaaa, SSM holds version 4, hmac-sha256 bbbbbbbbbbbb: run apply (or "
        "create-cf-template and update-stack) to roll them"
    )


def test_each_drifting_version_is_named_once() -> None:
    reasons = configuration_drift({"3": B, "2": A, "10": A}, B, None, parameter=PARAMETER)
    assert [r.split(" run ")[0] for r in reasons] == [
        "instances on launch template version 10",
        "instances on launch template version 2",
    ]


def test_same_digest_at_another_version_is_drift() -> None:
    """A later version written by hand with the same text still is not what the pin names."""
    assert configuration_drift({"1": A}, Pin(5, A.digest), None, parameter=PARAMETER)


def test_a_local_file_not_yet_ensured_is_drift() -> None:
    (reason,) = configuration_drift({"2": A}, A, B, parameter=PARAMETER, local_path="t.properties")
    assert reason.startswith("the local file t.properties has configuration version 4")
    assert reason.endswith("run ensure-transactor")


def test_a_missing_parameter_or_digest_is_drift() -> None:
    assert configuration_drift({"1": A}, None, None, parameter=PARAMETER) == [
        f"the SSM parameter {PARAMETER} does not exist"
    ]
    reasons = configuration_drift({"1": A}, Pin(3, None), None, parameter=PARAMETER)
    assert reasons[0].startswith(f"the SSM parameter {PARAMETER} has no keyed digest")
    assert len(reasons) == 2  # and the instances do not run what SSM holds


def test_distinct_versions_are_numbers_in_order() -> None:
    assert distinct_versions(["10", "2", None, "2", "$Latest", "1"]) == ["1", "2", "10"]


def test_boot_constants_read_back_what_the_rendered_user_data_pins(tmp_path: Path) -> None:
    """The rendered boot script (what EC2 answers as UserData, base64) names the pin, the
    parameter, its region and the system."""
    t, c, _ = files(tmp_path)
    transactor, cf = load_transactor(t)[1], load_cf(c)[1]
    script = user_data.render_boot_script(transactor, cf)
    found = boot_constants(base64.b64encode(script.encode()).decode())
    assert found is not None
    assert found.pin == Pin.parse(config_pin(transactor))
    assert found.pin.version is not None and found.pin.digest is not None
    assert (found.parameter, found.region, found.system) == (
        names.ssm_parameter(transactor.system),
        transactor.region,
        transactor.system,
    )


def test_user_data_that_is_not_our_boot_script_has_no_constants() -> None:
    assert boot_constants(base64.b64encode(b"#!/bin/bash\necho hi\n").decode()) is None
    assert boot_constants("not base64!") is None
    assert boot_constants(base64.b64encode(b"\xff\xfe").decode()) is None
    assert boot_constants("") is None


def test_the_heartbeat_age_counts_from_the_latest_datapoint_on_the_injected_clock() -> None:
    stamps = [datetime.fromtimestamp(t, timezone.utc) for t in (940.0, 1000.0, 880.0)]
    assert metric_age(stamps, 1003.25) == 3.2  # the latest, rounded to a tenth
    # Another machine's clock a little behind: never a negative age.
    assert metric_age(stamps, 999.0) == 0.0
    assert metric_age([], 1003.0) is None


def test_the_window_is_whole_periods_up_to_the_end_of_the_current_one() -> None:
    # 15 whole minutes before the one `now` is in, and that minute (it holds `now`).
    assert metric_window(1_000_030.0, 60, 15) == (999_120.0, 1_000_080.0)
    assert metric_window(120.0, 60, 15) == (120.0 - 900, 180.0)


def test_metrics_go_where_aws_cloudwatch_region_says_under_the_dimension_value() -> None:
    assert heartbeat_metric({}, "orders") is None
    assert heartbeat_metric({"aws-cloudwatch-region": " "}, "orders") is None
    on = {"aws-cloudwatch-region": "eu-west-1"}
    assert heartbeat_metric(on, "orders") == HeartbeatMetric("eu-west-1", "orders")
    named = {**on, "aws-cloudwatch-dimension-value": "orders-prod"}
    assert heartbeat_metric(named, "orders") == HeartbeatMetric("eu-west-1", "orders-prod")
