"""The one Logger, Tracer and Metrics of the Lambda entry points (style: "Logging and tracing (Powertools)").

AWS extra only: the embedded server never imports this module. Locally set `POWERTOOLS_DEV=true` and
`POWERTOOLS_TRACE_DISABLED=true`.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "managed-agents"
METRICS_NAMESPACE = "ManagedAgents"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
