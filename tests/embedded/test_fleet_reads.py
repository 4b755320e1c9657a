"""app/fleet.py: the account-level reads a fleet shares (AccountReads) and the fleet's exit code.

In-process moto: several AwsContexts (one per folder, as the fleet builds them) with one memo; what
reaches AWS is counted at botocore's `before-send`, which a memo answer never reaches.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from datomic_aws.app.fleet import SHARED_READS, AccountReads, worst
from datomic_aws.aws import AwsContext
from datomic_aws.errors import ExitCode


class Sent:
    """The operations that reached (moto's) AWS, whatever the context."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def __call__(self, request: Any, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        action = next((p[7:] for p in body.split("&") if p.startswith("Action=")), "")
        with self.lock:
            self.calls[action] += 1


def _folder_context(memo: AccountReads, sent: Sent) -> tuple[AwsContext, Counter[str]]:
    served: Counter[str] = Counter()
    return AwsContext(hooks=[*memo.hooks(served), ("before-send", sent)]), served


def _account_reads(ctx: AwsContext, region: str) -> None:
    ec2 = ctx.client("ec2", region)
    ctx.account_id(region)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    ec2.describe_instance_types(InstanceTypes=["m7i.large"])


def test_one_call_per_account_and_region_across_folders(mocked_aws: None) -> None:
    memo, sent = AccountReads(), Sent()
    folders = [_folder_context(memo, sent) for _ in range(3)]
    for ctx, _served in folders:
        _account_reads(ctx, "us-east-1")
        # A system's own read is never shared.
        ctx.client("ec2", "us-east-1").describe_security_groups()
    assert sent.calls["GetCallerIdentity"] == 1
    assert sent.calls["DescribeVpcs"] == 1
    assert sent.calls["DescribeSubnets"] == 1
    assert sent.calls["DescribeInstanceTypes"] == 1
    assert sent.calls["DescribeSecurityGroups"] == 3
    assert dict(memo.sent) == {
        "sts:GetCallerIdentity": 1,
        "ec2:DescribeVpcs": 1,
        "ec2:DescribeSubnets": 1,
        "ec2:DescribeInstanceTypes": 1,
    }
    # The first folder sent them; the two others were answered, with the same answers.
    assert [sum(s.values()) for _c, s in folders] == [0, 4, 4]
    assert {ctx.account_id("us-east-1") for ctx, _s in folders} == {"123456789012"}
    # Another region is another set of answers (another call each).
    ctx, _served = folders[0]
    _account_reads(ctx, "eu-west-1")
    assert sent.calls["DescribeVpcs"] == 2
    assert memo.sent["ec2:DescribeVpcs"] == 2
    assert set(memo.sent) <= SHARED_READS


def test_folders_asking_at_once_share_one_call(mocked_aws: None) -> None:
    memo, sent = AccountReads(), Sent()
    folders = [_folder_context(memo, sent) for _ in range(4)]
    for ctx, _served in folders:
        ctx.client("ec2", "us-east-1")  # clients built before the race
    start = threading.Barrier(len(folders))
    answers: list[list[str]] = []

    def read(ctx: AwsContext) -> None:
        start.wait()
        vpcs = ctx.client("ec2", "us-east-1").describe_vpcs()["Vpcs"]
        answers.append(sorted(v["VpcId"] for v in vpcs))

    threads = [threading.Thread(target=read, args=(ctx,)) for ctx, _s in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sent.calls["DescribeVpcs"] == 1
    assert len(answers) == 4 and all(a == answers[0] for a in answers)


def test_a_failed_read_is_not_kept(mocked_aws: None) -> None:
    from botocore.exceptions import ClientError

    memo, sent = AccountReads(), Sent()
    for _ in range(2):
        ctx, _served = _folder_context(memo, sent)
        with pytest.raises(ClientError):
            ctx.client("ec2", "us-east-1").describe_vpcs(VpcIds=["vpc-00000000"])
    assert sent.calls["DescribeVpcs"] == 2


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], ExitCode.OK),
        ([0, 0], ExitCode.OK),
        ([0, 3], ExitCode.CHANGES_PENDING),
        ([3, 2, 0], ExitCode.USAGE),
        ([2, 1, 3], ExitCode.FAILURE),
        ([1, 130, 2], ExitCode.INTERRUPTED),
        ([0, 7], ExitCode.FAILURE),  # an unknown code counts as a failure
    ],
)
def test_the_worst_exit_code(codes: list[int], expected: ExitCode) -> None:
    assert worst(codes) == int(expected)
