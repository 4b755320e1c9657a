"""The emulated transactors' metrics: HeartbeatMsec to the embedded CloudWatch, as Datomic's
transactor publishes it when its properties set aws-cloudwatch-region (namespace, dimension and
metric name in names.py; Datomic reports once a minute).

Owns `HeartbeatMetrics` (one per emulated transactor). Cadence: the active reports the heartbeats
written since its last report at its first heartbeat, then once per METRICS_EVERY_BEATS: at
Datomic's default 5 s heartbeat that is Datomic's minute, and with the tests' short heartbeats a
call every few seconds, never one per beat (CloudWatch's GetMetricData aggregates by period
anyway). Its client is one the emulation built on the embedded endpoint, never real AWS.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from datomic_aws import names

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_cloudwatch.client import CloudWatchClient

METRICS_EVERY_BEATS = 12


class HeartbeatMetrics:
    """HeartbeatMsec to the embedded CloudWatch, in Datomic's namespace and dimension: the
    region is aws-cloudwatch-region, the dimension's value aws-cloudwatch-dimension-value (else
    the system name, as the tool assumes). The values are the emulation's own (a count of beats);
    what matters to status is that a datapoint exists and when."""

    def __init__(self, client: CloudWatchClient | None, dimension_value: str) -> None:
        self._client = client
        self._dimension_value = dimension_value
        self._beats = 0
        self._reports = 0

    @classmethod
    def of(
        cls, client: Callable[[str], CloudWatchClient], config: dict[str, str], system: str
    ) -> HeartbeatMetrics:
        """Reporting nothing when the configuration does not set aws-cloudwatch-region (Datomic
        publishes no metrics then)."""
        region = config.get("aws-cloudwatch-region", "").strip()
        if not region:
            return cls(None, "")
        value = config.get("aws-cloudwatch-dimension-value", "").strip() or system
        return cls(client(region), value)

    def beat(self) -> None:
        """A heartbeat written: counted, and reported at the first and every
        METRICS_EVERY_BEATS-th."""
        if self._client is None:
            return
        self._beats += 1
        if self._reports and self._beats < METRICS_EVERY_BEATS:
            return
        from botocore.exceptions import ClientError

        # No Timestamp: CloudWatch's receive time, the wall clock (the world clock leaves out the
        # moments the process was frozen, which real time does not).
        count, self._beats = float(self._beats), 0
        self._reports += 1
        # A failed report is lost, as a metrics callback's would be; the transactor goes on.
        with contextlib.suppress(ClientError):
            self._client.put_metric_data(
                Namespace=names.METRICS_NAMESPACE,
                MetricData=[
                    {
                        "MetricName": names.HEARTBEAT_METRIC,
                        "Dimensions": [
                            {"Name": names.METRICS_DIMENSION, "Value": self._dimension_value}
                        ],
                        "StatisticValues": {
                            "SampleCount": count,
                            "Sum": count,
                            "Minimum": 1.0,
                            "Maximum": 1.0,
                        },
                    }
                ],
            )
