"""The one single-table definition.

The CDK data construct, the local stack's bootstrap and the test fixtures all build the table from
this module, so the deployed table and the emulated one cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expires_at"


@dataclass(frozen=True)
class GlobalIndex:
    name: str
    partition_key: str
    sort_key: str
    purpose: str


@dataclass(frozen=True)
class TableDefinition:
    partition_key: str = PARTITION_KEY
    sort_key: str = SORT_KEY
    ttl_attribute: str = TTL_ATTRIBUTE
    indexes: tuple[GlobalIndex, ...] = field(default_factory=tuple)

    def key_attributes(self) -> list[str]:
        names = [self.partition_key, self.sort_key]
        for index in self.indexes:
            names += [index.partition_key, index.sort_key]
        return names

    def create_table_kwargs(self, table_name: str) -> dict:
        """Arguments for boto3 ``create_table`` (local stack and tests)."""
        return {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": name, "AttributeType": "S"} for name in self.key_attributes()
            ],
            "KeySchema": [
                {"AttributeName": self.partition_key, "KeyType": "HASH"},
                {"AttributeName": self.sort_key, "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.partition_key, "KeyType": "HASH"},
                        {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index in self.indexes
            ],
        }


BY_OWNER = GlobalIndex(
    "gsi1", "gsi1pk", "gsi1sk", "items of an owner that live under another partition (a user's sessions)"
)
BY_DUE_TIME = GlobalIndex(
    "gsi2", "gsi2pk", "gsi2sk", "work due in a time bucket (credential refresh), queried without scans"
)

TABLE = TableDefinition(indexes=(BY_OWNER, BY_DUE_TIME))


def create_table(client, table_name: str) -> None:
    """Create the table and turn on TTL; used by the local stack and tests (never in production)."""
    client.create_table(**TABLE.create_table_kwargs(table_name))
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.2})
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TABLE.ttl_attribute},
    )
