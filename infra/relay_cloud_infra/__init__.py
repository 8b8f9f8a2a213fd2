"""The Agent Relay Cloud CDK app: one construct per capability, composed by ``RelayCloudStack``."""
