"""The vault key: envelope encryption of provider credentials (crypto-shred on account deletion)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

VAULT_ALIAS = "alias/relay-cloud-vault"
# Envelope encryption needs exactly these: a data key per secret, and decrypting it back.
VAULT_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


class Vault(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=VAULT_ALIAS,
            description="Agent Relay Cloud: vault key for provider credentials (envelope encryption)",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=RemovalPolicy.RETAIN,
        )

    def grant_envelope(self, grantee: iam.IGrantable) -> iam.Grant:
        """GenerateDataKey and Decrypt on this key only: no Encrypt, ReEncrypt or key administration."""
        return self.key.grant(grantee, *VAULT_ACTIONS)
