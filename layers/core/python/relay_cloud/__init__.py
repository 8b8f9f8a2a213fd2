"""Agent Relay Cloud: the shared library of every Lambda function (shipped as the core layer)."""
