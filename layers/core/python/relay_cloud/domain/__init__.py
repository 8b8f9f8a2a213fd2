"""Plain dataclasses and rules: no boto3, no os.environ, no HTTP."""
