"""The ``relay-cloud`` command line (``relay_cloud.cli.main:main``). Not shipped in the Lambda layer."""
