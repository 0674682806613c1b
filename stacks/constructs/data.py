"""Data: the DynamoDB tables (event log, resources), the S3 spill and files buckets and their access-log bucket."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from managed_agents.adapters.aws import dynamodb_resource_store as resource_store
from managed_agents.adapters.aws.dynamodb_event_store import PK as EVENTS_PK
from managed_agents.adapters.aws.dynamodb_event_store import SK as EVENTS_SK
from managed_agents.adapters.aws.dynamodb_event_store import TTL_ATTRIBUTE as EVENTS_TTL_ATTRIBUTE
from stacks.config import RESOURCES_TTL_ATTRIBUTE, PlatformConfig

# The resources table's schema is the adapter's (managed_agents/adapters/aws/dynamodb_resource_store.py): imported, so
# the stack and the adapter cannot drift.
# Object keys the platform writes in the spill bucket (event payloads over the item limit).
SPILL_OBJECT_PATTERN = "*"
# Object keys of the blob store in the files bucket (managed_agents/adapters/blob_keys.py: files, skill archives,
# session outputs), created at run time per workspace and id.
FILES_OBJECT_PATTERN = "*"
ResourceWrite = Literal["put", "update", "delete"]
ResourceRead = Literal["get", "list", "find"]
_RESOURCE_WRITES: dict[str, str] = {
    "put": "dynamodb:PutItem",
    "update": "dynamodb:UpdateItem",
    "delete": "dynamodb:DeleteItem",
}


class Data(Construct):
    """Tables on demand with point-in-time recovery and KMS encryption at rest; a private, SSL-only bucket."""

    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig) -> None:
        super().__init__(scope, id_)
        removal, table_removal = config.removal, config.table_removal
        pitr = dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)

        # The append-only event log: one partition per session, gapless `seq`. Its TTL attribute is carried only by
        # the webhook items of resource events (dynamodb_event_store.py): the log is the durable record.
        self.events_table = dynamodb.Table(
            self,
            "EventsTable",
            partition_key=dynamodb.Attribute(name=EVENTS_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=EVENTS_SK, type=dynamodb.AttributeType.NUMBER),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            # the webhook outbox (stacks/constructs/webhooks.py): the relay reads inserted event items
            stream=dynamodb.StreamViewType.NEW_IMAGE,
            time_to_live_attribute=EVENTS_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=pitr,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=not config.destroy_on_removal,
            removal_policy=table_removal,
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
            removal_policy=table_removal,
        )
        self.resources_table.add_global_secondary_index(
            index_name=resource_store.LIST_INDEX,
            partition_key=dynamodb.Attribute(name=resource_store.LIST_PK, type=string),
            sort_key=dynamodb.Attribute(name=resource_store.LIST_SK, type=string),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(resource_store.LIST_INCLUDES),
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
        # The blob store (BlobStore port, adapters/aws/s3_blob_store.py): uploaded files, skill archives, session
        # outputs. Users' data, so it is kept like the tables (`table_removal`); an upload that never completed is
        # cleaned up after a day.
        self.files_bucket = s3.Bucket(
            self,
            "FilesBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="files/",
            lifecycle_rules=[s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(1))],
            removal_policy=removal,
        )

    def grant_files(
        self, grantee: iam.IGrantable, *, read: bool = False, write: bool = False, delete: bool = False
    ) -> None:
        """Blob store access, by what the S3BlobStore adapter calls: read = GetObject (download, head), write =
        PutObject (a single PUT or the managed transfer's multipart upload, and the presigned upload URLs the API
        hands out), delete = DeleteObject (also how a failed or oversized upload is aborted, so writers get it too)."""
        actions = (["s3:GetObject"] if read else []) + (["s3:PutObject", "s3:DeleteObject"] if write else [])
        if delete and "s3:DeleteObject" not in actions:
            actions.append("s3:DeleteObject")
        if actions:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=actions, resources=[self.files_bucket.arn_for_objects(FILES_OBJECT_PATTERN)]
                )
            )

    def grant_events(
        self,
        grantee: iam.IGrantable,
        *,
        read: bool = False,
        append: bool = False,
        spill: bool = False,
        delete: bool = False,
    ) -> None:
        """Event log access, by what the EventStore adapter (dynamodb_event_store.py) calls for it:

        * read: Query (a slice, the last seq) and GetItem (an event by id), and the spilled payloads (GetObject);
        * append: Query (the next seq), PutItem (a one-event append's conditional puts of its id guard and event, a
          batch's transaction of them) and BatchGetItem (what a contested id guard points at, and whether its event
          is there); `spill`: payloads over the item limit (PutObject);
        * delete: Query and BatchWriteItem (a deleted session's items), ListBucket and DeleteObject (its payloads).
        """
        actions: set[str] = set()
        objects: list[str] = []
        if read:
            actions |= {"dynamodb:Query", "dynamodb:GetItem"}
            objects.append("s3:GetObject")
        if append:
            actions |= {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchGetItem"}
        if spill:
            objects.append("s3:PutObject")
        if delete:
            actions |= {"dynamodb:Query", "dynamodb:BatchWriteItem"}
            objects.append("s3:DeleteObject")
        if actions:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=sorted(actions), resources=[self.events_table.table_arn])
            )
        if objects:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=objects, resources=[self.spill_bucket.arn_for_objects(SPILL_OBJECT_PATTERN)]
                )
            )
        if delete:
            # Deleting a session's spilled payloads lists its prefix first.
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.spill_bucket.bucket_arn])
            )

    def grant_webhook_items(self, grantee: iam.IGrantable) -> None:
        """Putting the webhook items of resource events in the events table (PutItem, in the transaction of the
        resource write that causes them: dynamodb_resource_store.write_all's `outbox`), for a function that appends
        no event (the MCP proxy: `vault_credential.refresh_failed`)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[self.events_table.table_arn])
        )

    def grant_resources(
        self,
        grantee: iam.IGrantable,
        *,
        write: Collection[ResourceWrite] = (),
        reads: Collection[ResourceRead] = ("get", "list", "find"),
    ) -> None:
        """Resources table access: the reads named (get = GetItem by id; list = Query of the by_time index and
        BatchGetItem of its rows; find = Query of the lookup indexes and BatchGetItem of what they find; all three
        unless said) and the writes named: put (insert), update (replace), delete."""
        actions = ["dynamodb:GetItem"] if "get" in reads else []
        actions += ["dynamodb:BatchGetItem"] if {"list", "find"} & set(reads) else []  # (a list reads its rows)
        queries = bool({"list", "find"} & set(reads))
        actions += ["dynamodb:Query"] if queries else []
        actions += [_RESOURCE_WRITES[w] for w in sorted(write)]
        indexes_arn = f"{self.resources_table.table_arn}/index/*"
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.resources_table.table_arn])
        )
        if not queries:
            return
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[indexes_arn])
        )
