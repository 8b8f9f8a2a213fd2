"""moto-backed fixtures for the adapter integration tests (no sockets: moto patches botocore in-process)."""

from __future__ import annotations

import uuid

import boto3
import pytest
from moto import mock_aws

from relay_cloud.adapters.dynamo import models
import os

from relay_cloud.adapters.dynamo.models import bind_table
from relay_cloud.adapters.dynamo.table import create_table
from relay_cloud.local import moto_dynamodb
from tests.integration.dynamodb_local import start_or_skip

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    """Every AWS call in the test goes to moto, with fake credentials and region us-east-1."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def table(aws):
    """A fresh single table (the production definition) with every pynamodb model bound to it."""
    name = f"relay-test-{uuid.uuid4().hex[:12]}"
    saved = {model: (model.Meta.table_name, model.Meta.host, model.Meta.region) for model in models.ALL_MODELS}
    create_table(boto3.client("dynamodb", region_name=REGION), name)
    models.bind_table(name, host=None, region=REGION)
    try:
        yield name
    finally:
        for model, (table_name, host, region) in saved.items():
            model.Meta.table_name = table_name
            model.Meta.host = host
            model.Meta.region = region
            model._connection = None


@pytest.fixture
def kms_key(aws) -> str:
    """A symmetric customer master key; returns its ARN."""
    client = boto3.client("kms", region_name=REGION)
    return client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]


# -- the data tier on two engines: moto and AWS's own DynamoDB Local -------------------------------


@pytest.fixture(scope="session")
def ddb_local():
    server = start_or_skip()
    yield server
    server.stop()


@pytest.fixture(params=["moto", pytest.param("dynamodb_local", marks=pytest.mark.dynamodb_local)])
def backend(request, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    name = f"relay-test-{uuid.uuid4().hex[:8]}"
    if request.param == "moto":
        moto_dynamodb.install()  # concurrent transactions must not lose writes (moto alone does)
        with mock_aws():
            create_table(boto3.client("dynamodb", region_name="us-east-1"), name)
            bind_table(name, host=None, region="us-east-1")
            yield boto3.client("dynamodb", region_name="us-east-1"), name
    else:
        server = request.getfixturevalue("ddb_local")
        client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=server.url)
        create_table(client, name)
        bind_table(name, host=server.url, region="us-east-1")
        yield client, name
        client.delete_table(TableName=name)
    bind_table(os.environ.get("RELAY_TABLE_NAME", "relay-cloud"), host=None)


