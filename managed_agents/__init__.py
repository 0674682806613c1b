"""Self-hosted Managed Agents: the Anthropic Managed Agents API, run on one machine or in your AWS account."""

__version__ = "0.1.0"
