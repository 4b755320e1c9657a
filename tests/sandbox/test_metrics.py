"""The emulated transactors' HeartbeatMsec (sandbox/metrics.py), in-process in moto: published only
when the configuration sets aws-cloudwatch-region, in Datomic's namespace and dimension, at the
first heartbeat and then once per METRICS_EVERY_BEATS, never once per beat."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from datomic_aws import names
from datomic_aws.sandbox.metrics import METRICS_EVERY_BEATS, HeartbeatMetrics


@pytest.fixture
def puts(mocked_aws: None) -> tuple[list[str], Any]:
    """The calls a CloudWatch client makes, and a factory that hands out that client."""
    calls: list[str] = []
    client = boto3.client("cloudwatch", region_name="eu-west-1")
    client.meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    return calls, lambda region: client


def test_without_aws_cloudwatch_region_nothing_is_published(puts: tuple[list[str], Any]) -> None:
    calls, factory = puts
    metrics = HeartbeatMetrics.of(factory, {"protocol": "ddb"}, "orders")
    for _ in range(3 * METRICS_EVERY_BEATS):
        metrics.beat()
    assert calls == []


def test_the_first_beat_then_one_report_per_metrics_every_beats(
    puts: tuple[list[str], Any],
) -> None:
    calls, factory = puts
    config = {"aws-cloudwatch-region": "eu-west-1", "aws-cloudwatch-dimension-value": "orders-x"}
    metrics = HeartbeatMetrics.of(factory, config, "orders")
    metrics.beat()
    assert calls == ["PutMetricData"]
    for _ in range(METRICS_EVERY_BEATS - 1):
        metrics.beat()
    assert calls == ["PutMetricData"]
    metrics.beat()
    assert calls == ["PutMetricData"] * 2
    listed = factory("eu-west-1").list_metrics(Namespace=names.METRICS_NAMESPACE)["Metrics"]
    assert [(m["MetricName"], m["Dimensions"]) for m in listed] == [
        (names.HEARTBEAT_METRIC, [{"Name": names.METRICS_DIMENSION, "Value": "orders-x"}])
    ]
