"""Secrets: the model API key, the bootstrap admin API key, and the vault credentials' KMS key.

Vault credentials are Secrets Manager secrets created at run time under `{prefix}/vault/`, encrypted with `vault_key`.
Only the MCP proxy reads them, enforced twice:

* resource policy: the vault key's key policy allows `kms:Decrypt` only to the MCP proxy role (through Secrets
  Manager) and explicitly denies `kms:Decrypt`/`kms:ReEncryptFrom` to every other principal, the account root
  included. GetSecretValue needs that decrypt, so no IAM policy anywhere in the account can grant a read;
* IAM: only the MCP proxy role is allowed `secretsmanager:GetSecretValue` on the prefix; the API and ModelTurn roles
  carry an explicit deny.

Writing a value encrypted with a customer-managed key (CreateSecret, PutSecretValue) needs `kms:GenerateDataKey` and
`kms:Decrypt` on it (Secrets Manager, "Permissions for the KMS key"), so the MCP proxy also writes every vault secret
value: new credentials' secrets and updates for the API, rotated OAuth tokens for itself. The API only deletes them
(DeleteSecret and DescribeSecret use no key) and holds no key permission at all.

Secrets are per credential and created at run time, so a per-secret resource policy cannot be declared in
CloudFormation; the key policy is the resource policy that covers all of them.

Webhook signing secrets are Secrets Manager secrets created at run time under `{prefix}/webhook/` (one per endpoint,
encrypted with the account's Secrets Manager key, `aws/secretsmanager`): the API writes, reads (an idempotent replay
of a create answers the secret again) and deletes them; the webhook deliverer only reads them (it signs with them).
No other role is granted them.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import PlatformConfig
from stacks.nag import acknowledge

_KEY_ADMIN_ACTIONS = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
]


class Secrets(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig) -> None:
        super().__init__(scope, id_)
        removal = config.removal
        self.vault_prefix = f"{config.prefix}/vault/"
        self.webhook_prefix = f"{config.prefix}/webhook/"
        self.model_key = secretsmanager.Secret(
            self,
            "ModelApiKey",
            description="Anthropic API key of the ModelTurn Lambda. Deployed as a random placeholder: put the real "
            "key with `aws secretsmanager put-secret-value` (docs/deploy-aws.md).",
            removal_policy=removal,
        )
        acknowledge(
            self.model_key,
            "AwsSolutions-SMG4",
            "A third-party API key issued by the model provider's console; Secrets Manager cannot rotate it. "
            "Rotate it at the provider and put the new value.",
        )
        self.admin_key = secretsmanager.Secret(
            self,
            "AdminApiKey",
            description="The platform's admin API key (use the value as the SDK's api_key). The API Lambda registers "
            "its hash on its first request; a new value put here replaces the key within 10 minutes.",
            # 48 letters and digits: a key KeyService.ensure_bootstrap_key accepts (>= 32 URL-safe characters).
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48, exclude_punctuation=True, include_space=False
            ),
            removal_policy=removal,
        )
        acknowledge(
            self.admin_key,
            "AwsSolutions-SMG4",
            "The API key every client of the platform holds: a rotation Lambda would invalidate it without telling "
            "them. Rotate it deliberately with put-secret-value; the API registers the new value and revokes the old "
            "one within 10 minutes (managed_agents/api/admin_bootstrap.py).",
        )
        stack = Stack.of(self)
        self._root = iam.AccountRootPrincipal()
        self.vault_key = kms.Key(
            self,
            "VaultKey",
            description=f"Encrypts {self.vault_prefix}* vault credential secrets; only the MCP proxy may decrypt.",
            enable_key_rotation=True,
            removal_policy=removal,
            pending_window=Duration.days(30),
            policy=iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(
                        sid="KeyAdministration",
                        principals=[self._root],
                        actions=_KEY_ADMIN_ACTIONS,
                        resources=["*"],
                    )
                ]
            ),
        )
        self.vault_secrets_arn = stack.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{self.vault_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.webhook_secrets_arn = stack.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{self.webhook_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self._via_secrets_manager = {"StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}}

    def allow_vault_reader(self, role: iam.IRole) -> None:
        """The MCP proxy: the only principal that may read vault credentials, and so the one that writes their values
        (creating or changing a value encrypted with the vault key needs its decrypt too)."""
        self.vault_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="VaultReaderDecrypt",
                principals=[iam.ArnPrincipal(role.role_arn)],
                actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=["*"],
                conditions=self._via_secrets_manager,
            )
        )
        self.vault_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyDecryptToAllButVaultReader",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["kms:Decrypt", "kms:ReEncryptFrom"],
                resources=["*"],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": role.role_arn}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadVaultSecrets",
                actions=["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                resources=[self.vault_secrets_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CreateVaultSecretsWithVaultKey",
                actions=["secretsmanager:CreateSecret"],
                resources=[self.vault_secrets_arn],
                conditions={"StringEquals": {"secretsmanager:KmsKeyArn": self.vault_key.key_arn}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="UseVaultKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.vault_key.key_arn],
                conditions=self._via_secrets_manager,
            )
        )

    def allow_vault_remover(self, role: iam.IRole) -> None:
        """The API: deletes vault credential secrets (archive, delete, a failed create) and can neither read nor
        write one; it has no permission on the vault key."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DeleteVaultSecrets",
                actions=["secretsmanager:DeleteSecret", "secretsmanager:DescribeSecret"],
                resources=[self.vault_secrets_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="NeverWriteVaultSecrets",
                effect=iam.Effect.DENY,
                actions=["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret"],
                resources=[self.vault_secrets_arn],
            )
        )
        self.deny_vault_reads(role)

    def deny_vault_reads(self, role: iam.IRole) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="NeverReadVaultSecrets",
                effect=iam.Effect.DENY,
                actions=["secretsmanager:GetSecretValue"],
                resources=[self.vault_secrets_arn],
            )
        )

    def allow_webhook_secrets(self, role: iam.IRole, *, write: bool) -> None:
        """Webhook signing secrets (module docstring): `write`, the API (create, rotate, read, delete); else the
        deliverer (read)."""
        actions = ["secretsmanager:GetSecretValue"]
        if write:
            actions += [
                "secretsmanager:CreateSecret",
                "secretsmanager:PutSecretValue",
                "secretsmanager:DeleteSecret",
                "secretsmanager:DescribeSecret",
            ]
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="WebhookSigningSecrets", actions=actions, resources=[self.webhook_secrets_arn])
        )
