"""A custom domain: the public URL, the CloudFront alias and TLS 1.2 without a CFR4 acknowledgement."""

from __future__ import annotations

import pytest
from cdk_template_helpers import of_type, props, relay_functions
from infra_build import build

from aws_cdk.assertions import Template

DOMAIN = "relay.example.com"
CERTIFICATE = "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def custom(web_dir, tmp_path_factory):
    app, stack, pack = build(web_dir, tmp_path_factory, domain_name=DOMAIN, certificate_arn=CERTIFICATE,
                             github_client_id="Iv1.0123456789")
    return app, pack, Template.from_stack(stack).to_json()["Resources"]


def test_public_url_and_client_id_come_from_context(custom):
    _, _, resources = custom
    for fn in relay_functions(resources).values():
        variables = props(fn)["Environment"]["Variables"]
        assert variables["RELAY_PUBLIC_URL"] == f"https://{DOMAIN}"
        assert variables["RELAY_GITHUB_CLIENT_ID"] == "Iv1.0123456789"


def test_distribution_uses_the_certificate_with_tls12(custom):
    app, pack, resources = custom
    (distribution,) = of_type(resources, "AWS::CloudFront::Distribution").values()
    config = props(distribution)["DistributionConfig"]
    assert config["Aliases"] == [DOMAIN]
    assert config["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert config["ViewerCertificate"]["AcmCertificateArn"] == CERTIFICATE
    acknowledged = [r["id"] for r in distribution["Metadata"]["cdk_nag"]["rules_to_suppress"]]
    assert "AwsSolutions-CFR4" not in acknowledged
    assert [v.rule_name for v in pack.validate_scope(app).violations] == []


def test_domain_without_certificate_is_refused(web_dir, tmp_path_factory):
    with pytest.raises(ValueError, match="certificate_arn"):
        build(web_dir, tmp_path_factory, domain_name=DOMAIN)
