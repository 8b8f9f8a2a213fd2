"""The single DynamoDB table, built from the same definition the local stack bootstraps."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from relay_cloud.adapters.dynamo.table import TABLE, TableDefinition


def _string(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class Data(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, definition: TableDefinition = TABLE) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TableKey",
            alias="alias/relay-cloud-table",
            description="Agent Relay Cloud: encryption at rest of the DynamoDB table",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=_string(definition.partition_key),
            sort_key=_string(definition.sort_key),
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=index.name,
                    partition_key=_string(index.partition_key),
                    sort_key=_string(index.sort_key),
                    projection_type=dynamodb.ProjectionType.ALL,
                )
                for index in definition.indexes
            ],
            time_to_live_attribute=definition.ttl_attribute,
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryptionV2.customer_managed_key(self.key),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
