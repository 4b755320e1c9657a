"""status's heartbeat (issue 13), in-process in moto: the age of the latest HeartbeatMsec datapoint
Datomic's transactor publishes to CloudWatch (namespace Datomic, dimension Transactor, names.py),
read with one GetMetricData in the transactor file's aws-cloudwatch-region, on an injected clock.
No datapoint, metrics not enabled, no transactor file and AccessDenied are notes, never an
invented age; only a read with a place to read from makes a call.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.stub import ANY, Stubber

from datomic_aws import names
from datomic_aws.app.status import read_heartbeat
from datomic_aws.aws import AwsContext
from datomic_aws.config.transactor import TransactorSpec, load_transactor

if TYPE_CHECKING:
    from conftest import CallRecorder

SAMPLES = Path(__file__).resolve().parents[2] / "datomic_aws" / "config_samples"
SYSTEM = "my-datomic-system"  # aws-dynamodb-table of the ddb sample
METRICS_REGION = "eu-west-1"  # not the table's: the metrics go where aws-cloudwatch-region says
NOW = 1_700_000_130.0  # its minute (CloudWatch's 60 s period) starts at 1_700_000_100


def _transactor(tmp_path: Path, *edits: tuple[str, str]) -> TransactorSpec:
    path = tmp_path / "transactor.properties"
    text = (SAMPLES / "transactor.properties").read_text(encoding="latin-1")
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text, encoding="latin-1")
    return load_transactor(path)[1]


METRICS_ON = ("# aws-cloudwatch-region=us-east-1\n", f"aws-cloudwatch-region={METRICS_REGION}\n")
DIMENSION = (
    "# aws-cloudwatch-dimension-value=my-datomic-system\n",
    "aws-cloudwatch-dimension-value=orders-prod\n",
)


def _publish(stamp: float, value: str, metric: str = names.HEARTBEAT_METRIC) -> None:
    """A datapoint as Datomic's transactor publishes it."""
    boto3.client("cloudwatch", region_name=METRICS_REGION).put_metric_data(
        Namespace=names.METRICS_NAMESPACE,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": names.METRICS_DIMENSION, "Value": value}],
                "Timestamp": datetime.fromtimestamp(stamp, timezone.utc),
                "StatisticValues": {"SampleCount": 12, "Sum": 12, "Minimum": 1, "Maximum": 1},
            }
        ],
    )


def test_the_age_of_the_latest_datapoint_on_the_injected_clock(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    transactor = _transactor(tmp_path, METRICS_ON)
    _publish(NOW - 600, SYSTEM)  # an older minute
    _publish(NOW - 45, SYSTEM)  # the latest: in the minute starting at NOW - 90
    _publish(NOW - 10, "another-system")  # another transactor's: not this one's
    _publish(NOW - 5, SYSTEM, "HeartMonitorMsec")  # a standby's metric, not a heartbeat
    recorder.operations.clear()
    beat = read_heartbeat(ctx, transactor, lambda: NOW)
    assert beat == {
        "source": "cloudwatch",
        "metric": "HeartbeatMsec",
        "namespace": "Datomic",
        # Without aws-cloudwatch-dimension-value: the system name.
        "dimension": {"name": "Transactor", "value": SYSTEM},
        "region": METRICS_REGION,
        "age_seconds": 90.0,  # from the start of its 60 s period
        "resolution_seconds": 60,
        "note": None,
    }
    # The call log names a service by its endpoint prefix: CloudWatch's is "monitoring".
    assert recorder.operations == ["monitoring:GetMetricData"]


def test_the_dimension_value_is_the_files_and_an_old_datapoint_is_none(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    transactor = _transactor(tmp_path, METRICS_ON, DIMENSION)
    _publish(NOW - 20, "orders-prod")
    beat = read_heartbeat(ctx, transactor, lambda: NOW)
    assert (beat["dimension"], beat["age_seconds"]) == (
        {"name": "Transactor", "value": "orders-prod"},
        30.0,
    )
    # 20 minutes later the datapoint is out of the window: said, not guessed.
    late = read_heartbeat(ctx, transactor, lambda: NOW + 1200)
    assert (late["age_seconds"], late["note"]) == (None, "no datapoint in the last 15 minutes")
    assert recorder.operations == ["monitoring:GetMetricData"] * 2


def test_no_datapoint_is_a_note(ctx: AwsContext, tmp_path: Path) -> None:
    beat = read_heartbeat(ctx, _transactor(tmp_path, METRICS_ON), lambda: NOW)
    assert beat["region"] == METRICS_REGION
    assert (beat["age_seconds"], beat["note"]) == (None, "no datapoint in the last 15 minutes")


def test_metrics_off_or_no_transactor_file_is_a_note_without_any_call(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    off = read_heartbeat(ctx, _transactor(tmp_path), lambda: NOW)
    assert (off["age_seconds"], off["region"], off["dimension"]) == (None, None, None)
    assert off["note"].endswith(
        "does not set aws-cloudwatch-region: the transactor publishes no metrics"
    )
    unknown = read_heartbeat(ctx, None, lambda: NOW)
    assert unknown["age_seconds"] is None
    assert unknown["note"].startswith("no --transactor file")
    # A sql transactor publishes the same metrics: the same rule, whatever the storage.
    shutil.copyfile(SAMPLES / "sql-transactor.properties", tmp_path / "sql.properties")
    sql = read_heartbeat(ctx, load_transactor(tmp_path / "sql.properties")[1], lambda: NOW)
    assert "does not set aws-cloudwatch-region" in sql["note"]
    assert recorder.operations == []


def test_access_denied_is_a_note_naming_the_permission(ctx: AwsContext, tmp_path: Path) -> None:
    transactor = _transactor(tmp_path, METRICS_ON)
    client = ctx.client("cloudwatch", METRICS_REGION)
    expected = {
        "MetricDataQueries": [
            {
                "Id": "heartbeat",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "Datomic",
                        "MetricName": "HeartbeatMsec",
                        "Dimensions": [{"Name": "Transactor", "Value": SYSTEM}],
                    },
                    "Period": 60,
                    "Stat": "SampleCount",
                },
            }
        ],
        # The window: 15 whole minutes before NOW's minute, and that minute.
        "StartTime": datetime.fromtimestamp(1_700_000_100 - 900, timezone.utc),
        "EndTime": datetime.fromtimestamp(1_700_000_160, timezone.utc),
        "ScanBy": ANY,
    }
    with Stubber(client) as stub:
        # AWS's answer to a caller without cloudwatch:GetMetricData.
        stub.add_client_error(
            "get_metric_data",
            service_error_code="AccessDenied",
            service_message=(
                "User: arn:aws:iam::123456789012:user/auditor is not authorized to perform: "
                "cloudwatch:GetMetricData because no identity-based policy allows the "
                "cloudwatch:GetMetricData action"
            ),
            http_status_code=403,
            expected_params=expected,
        )
        beat = read_heartbeat(ctx, transactor, lambda: NOW)
        stub.assert_no_pending_responses()
    assert beat["age_seconds"] is None
    assert beat["note"] == "AccessDenied: status needs cloudwatch:GetMetricData"
