"""The web app's Content-Security-Policy: one definition, sent by CloudFront (infra web construct)
and by the local server, and enforced in the browser tests."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' https://avatars.githubusercontent.com data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)
