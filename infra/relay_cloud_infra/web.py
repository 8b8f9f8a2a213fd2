"""Static site in a private S3 bucket behind CloudFront, which also fronts the HTTP API."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from relay_cloud.http.web_policy import CONTENT_SECURITY_POLICY


# Viewer-request rewrite for the S3 behaviour: extensionless paths map to the built .html pages.
PRETTY_URLS_JS = """\
function handler(event) {
  var request = event.request;
  var uri = request.uri;
  if (uri === '' || uri === '/') {
    request.uri = '/index.html';
  } else if (uri === '/dashboard' || uri.indexOf('/dashboard/') === 0) {
    request.uri = '/dashboard.html';
  } else if (uri.charAt(uri.length - 1) === '/') {
    request.uri = uri + 'index.html';
  } else if (uri.substring(uri.lastIndexOf('/') + 1).indexOf('.') === -1) {
    request.uri = uri + '.html';
  }
  return request;
}
"""


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(path.is_file() for path in folder.rglob("*"))


class Web(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_origin_domain: str,
        web_dir: Path,
        domain_name: str | None = None,
        certificate_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if bool(domain_name) != bool(certificate_arn):
            raise ValueError("context domain_name and certificate_arn (ACM, us-east-1) go together")

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.rewrite = cloudfront.Function(
            self,
            "PrettyUrls",
            code=cloudfront.FunctionCode.from_inline(PRETTY_URLS_JS),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
            comment="Map extensionless paths to the static .html pages",
        )
        self.headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment="Agent Relay Cloud security headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=CONTENT_SECURITY_POLICY, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN,
                    override=True,
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(730), include_subdomains=True, override=True
                ),
            ),
        )
        self.certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn) if certificate_arn else None
        )
        api_behavior = cloudfront.BehaviorOptions(
            origin=origins.HttpOrigin(
                api_origin_domain,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            ),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            response_headers_policy=self.headers,
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="Agent Relay Cloud: web app and API",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self.headers,
                function_associations=[
                    cloudfront.FunctionAssociation(
                        function=self.rewrite, event_type=cloudfront.FunctionEventType.VIEWER_REQUEST
                    )
                ],
            ),
            additional_behaviors={"/api/*": api_behavior, "/health": api_behavior},
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            domain_names=[domain_name] if domain_name else None,
            certificate=self.certificate,
        )

        self.deployment: s3deploy.BucketDeployment | None = None
        if _has_files(web_dir):
            self.deployment = s3deploy.BucketDeployment(
                self,
                "Deploy",
                sources=[s3deploy.Source.asset(str(web_dir))],
                destination_bucket=self.bucket,
                distribution=self.distribution,
                distribution_paths=["/*"],
                memory_limit=256,
                log_group=logs.LogGroup(self, "DeployLogs", retention=logs.RetentionDays.ONE_MONTH),
            )
        else:
            Annotations.of(self).add_info(f"{web_dir} has no files yet: the site bucket is created empty")
