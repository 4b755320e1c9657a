"""status's heartbeat (issue 13), in-process in moto: one consistent GetItem of the heartbeat item
of the `ddb` table (never a scan), its age on an injected clock, and a missing item or table said
as such, never an error."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from datomic_aws import names
from datomic_aws.app.drift import BootConstants, Pin
from datomic_aws.app.status import read_heartbeat
from datomic_aws.aws import AwsContext
from datomic_aws.config.transactor import load_transactor

if TYPE_CHECKING:
    from conftest import CallRecorder

SAMPLES = Path(__file__).resolve().parents[2] / "config_samples"
TABLE = "my-datomic-system"  # aws-dynamodb-table of the ddb sample
REGION = "us-east-1"


def _table(stamp: float | None) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # Another item of the table: never read (no scan).
    ddb.put_item(TableName=TABLE, Item={"id": {"S": "pod-catalog"}, "rev": {"N": "1"}})
    if stamp is not None:
        item = {
            "id": {"S": names.HEARTBEAT_ITEM_ID},
            "owner": {"S": "i-0123456789abcdef0"},
            "seq": {"N": "41"},
            "stamp": {"N": repr(stamp)},
        }
        ddb.put_item(TableName=TABLE, Item=item)


def test_the_age_of_the_last_heartbeat_on_the_injected_clock(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    shutil.copyfile(SAMPLES / "transactor.properties", tmp_path / "transactor.properties")
    transactor = load_transactor(tmp_path / "transactor.properties")[1]
    _table(1_700_000_000.25)
    recorder.operations.clear()
    beat = read_heartbeat(ctx, {}, transactor, lambda: 1_700_000_003.0)
    assert beat == {
        "table": TABLE,
        "region": REGION,
        "item": names.HEARTBEAT_ITEM_ID,
        "owner": "i-0123456789abcdef0",
        "age_seconds": 2.8,
        "note": None,
    }
    assert recorder.operations == ["dynamodb:GetItem"]


def test_without_the_file_the_table_is_the_systems_in_the_configurations_region(
    ctx: AwsContext, recorder: CallRecorder
) -> None:
    _table(100.0)
    boots = {"3": BootConstants(Pin(2, "a" * 64), "/datomic/x", REGION, TABLE)}
    beat = read_heartbeat(ctx, boots, None, lambda: 160.0)
    assert beat is not None
    assert (beat["table"], beat["age_seconds"]) == (TABLE, 60.0)
    assert recorder.operations == ["dynamodb:GetItem"]


def test_no_item_no_table_and_no_ddb_are_said_not_raised(
    ctx: AwsContext, recorder: CallRecorder, tmp_path: Path
) -> None:
    boots = {"1": BootConstants(Pin(1, "a" * 64), "/datomic/x", REGION, TABLE)}
    missing = read_heartbeat(ctx, boots, None, lambda: 0.0)
    assert missing is not None
    assert (missing["age_seconds"], missing["note"]) == (None, "ResourceNotFoundException")
    _table(None)
    empty = read_heartbeat(ctx, boots, None, lambda: 0.0)
    assert empty is not None
    assert (empty["owner"], empty["age_seconds"], empty["note"]) == (
        None,
        None,
        "no heartbeat item",
    )
    # A sql transactor has no table: nothing is read.
    shutil.copyfile(SAMPLES / "sql-transactor.properties", tmp_path / "t.properties")
    recorder.operations.clear()
    assert read_heartbeat(ctx, boots, load_transactor(tmp_path / "t.properties")[1], time) is None
    assert recorder.operations == []


def time() -> float:
    return 0.0
