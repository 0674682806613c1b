"""Lambda entry points: thin handlers that wire the AWS adapters into `managed_agents` (style: functions/)."""
