"""The local runtime: ``relay-cloud dev`` runs the whole control plane in one process on 127.0.0.1
(embedded AWS via moto, the API Gateway adapter, static web, schedules, sandbox upstreams).
Not shipped in the Lambda layer. ``from relay_cloud.local.stack import LocalStack``.
"""
