"""Data: the DynamoDB tables (event log, resources) and the S3 spill bucket with its access-log bucket."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from managed_agents.adapters.aws import dynamodb_resource_store as resource_store
from managed_agents.adapters.aws.dynamodb_event_store import PK as EVENTS_PK
from managed_agents.adapters.aws.dynamodb_event_store import SK as EVENTS_SK
from stacks.config import RESOURCES_TTL_ATTRIBUTE, PlatformConfig

# The resources table's schema is the adapter's (managed_agents/adapters/aws/dynamodb_resource_store.py): imported, so
# the stack and the adapter cannot drift.
# Object keys the platform writes in the spill bucket (event payloads over the item limit; files later).
SPILL_OBJECT_PATTERN = "*"


class Data(Construct):
    """Tables on demand with point-in-time recovery and KMS encryption at rest; a private, SSL-only bucket."""

    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig) -> None:
        super().__init__(scope, id_)
        removal = RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN
        pitr = dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)

        # The append-only event log: one partition per session, gapless `seq`. No TTL: the log is the durable record.
        self.events_table = dynamodb.Table(
            self,
            "EventsTable",
            partition_key=dynamodb.Attribute(name=EVENTS_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=EVENTS_SK, type=dynamodb.AttributeType.NUMBER),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=not config.destroy_on_removal,
            removal_policy=removal,
        )
        # Agents, environments, sessions, keys, vault metadata: `pk` only, a by-time list index and keys-only lookup
        # indexes. TTL is enabled on `expires_at` (epoch seconds) for records that should expire on their own.
        string = dynamodb.AttributeType.STRING
        self.resources_table = dynamodb.Table(
            self,
            "ResourcesTable",
            partition_key=dynamodb.Attribute(name=resource_store.PK, type=string),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=RESOURCES_TTL_ATTRIBUTE,
            deletion_protection=not config.destroy_on_removal,
            removal_policy=removal,
        )
        self.resources_table.add_global_secondary_index(
            index_name=resource_store.LIST_INDEX,
            partition_key=dynamodb.Attribute(name=resource_store.LIST_PK, type=string),
            sort_key=dynamodb.Attribute(name=resource_store.LIST_SK, type=string),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        for slot in range(1, resource_store.LOOKUP_SLOTS + 1):
            self.resources_table.add_global_secondary_index(
                index_name=resource_store.lookup_index(slot),
                partition_key=dynamodb.Attribute(name=resource_store.lookup_key(slot), type=string),
                sort_key=dynamodb.Attribute(name=resource_store.SCOPE_SK, type=string),
                projection_type=dynamodb.ProjectionType.KEYS_ONLY,
            )

        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=removal,
        )
        # (cdk-nag's S1 does not flag this bucket: it recognizes it as the spill bucket's access-log destination)
        self.spill_bucket = s3.Bucket(
            self,
            "SpillBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="spill/",
            removal_policy=removal,
        )

    def grant_events(self, grantee: iam.IGrantable, *, write: bool) -> None:
        """Event log access: reads (Query/Get) and, for writers, the conditional transactional appends."""
        actions = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:DescribeTable"]
        if write:
            actions += [
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:ConditionCheckItem",
            ]
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.events_table.table_arn])
        )
        self._grant_spill(grantee, write=write)

    def grant_resources(self, grantee: iam.IGrantable, *, write: bool) -> None:
        actions = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:DescribeTable"]
        if write:
            actions += [
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:ConditionCheckItem",
            ]
        indexes_arn = f"{self.resources_table.table_arn}/index/*"
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.resources_table.table_arn])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[indexes_arn])
        )

    def _grant_spill(self, grantee: iam.IGrantable, *, write: bool) -> None:
        actions = ["s3:GetObject"]
        if write:
            actions += ["s3:PutObject", "s3:DeleteObject"]
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.spill_bucket.arn_for_objects(SPILL_OBJECT_PATTERN)])
        )
        if write:
            # Deleting a session's spilled payloads lists its prefix first.
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.spill_bucket.bucket_arn])
            )
