"""The storage the emulated transactors' HA protocol runs against: the heartbeat item.

Owns `Record` (who is active, its heartbeat count, when it last wrote), the `Storage` protocol
(read; conditional write), `MemoryStorage` (an in-memory lease, for protocols other than ddb) and
`DynamoStorage` (the item in the system's embedded DynamoDB table, written with conditional
PutItems). It never talks to real
AWS: its client is one the emulation built on the embedded endpoint.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from datomic_aws import names

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# The emulation's own heartbeat item (Datomic's storage layout is private to Datomic).
HEARTBEAT_KEY = names.HEARTBEAT_ITEM_ID


@dataclass(frozen=True)
class Record:
    """The heartbeat item: who is active, its heartbeat count, and when it last wrote (wall time)."""

    owner: str
    seq: int
    stamp: float


class Storage(Protocol):
    def read(self) -> Record | None: ...

    def write(self, new: Record, expected: Record | None) -> bool:
        """Conditional write: only if the item is still `expected` (absent when None)."""
        ...


class MemoryStorage:
    """An in-memory lease for protocols other than ddb."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._record: Record | None = None

    def read(self) -> Record | None:
        with self._lock:
            return self._record

    def write(self, new: Record, expected: Record | None) -> bool:
        with self._lock:
            if self._record != expected:
                return False
            self._record = new
            return True


class DynamoStorage:
    """The heartbeat item in the system's DynamoDB table, written with conditional PutItems."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def read(self) -> Record | None:
        item = self._client.get_item(
            TableName=self._table, Key={"id": {"S": HEARTBEAT_KEY}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return Record(item["owner"]["S"], int(item["seq"]["N"]), float(item["stamp"]["N"]))

    def write(self, new: Record, expected: Record | None) -> bool:
        from botocore.exceptions import ClientError

        item: dict[str, AttributeValueTypeDef] = {
            "id": {"S": HEARTBEAT_KEY},
            "owner": {"S": new.owner},
            "seq": {"N": str(new.seq)},
            "stamp": {"N": repr(new.stamp)},
        }
        try:
            if expected is None:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(id)",
                )
            else:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="#o = :o AND #s = :s",
                    ExpressionAttributeNames={"#o": "owner", "#s": "seq"},
                    ExpressionAttributeValues={
                        ":o": {"S": expected.owner},
                        ":s": {"N": str(expected.seq)},
                    },
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
