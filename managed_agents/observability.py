"""The one Logger, Tracer and Metrics of the Lambda entry points (style: "Logging and tracing (Powertools)").

AWS extra only: the embedded server never imports this module. Locally set `POWERTOOLS_DEV=true` and
`POWERTOOLS_TRACE_DISABLED=true`.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "managed-agents"
METRICS_NAMESPACE = "ManagedAgents"
# What X-Ray instruments: botocore, i.e. every AWS call. Powertools' default (`patch_all`) also imports and patches
# requests, sqlite3, httpx and httplib (under botocore too: a second subsegment per AWS call); httpx alone (it
# imports its CLI: click, rich, pygments) cost ~85 ms of every traced init. The model SDK runs on httpx2, which X-Ray
# does not patch. The MCP proxy, whose MCP server calls go through httpx, adds it (functions/mcp_proxy/handler.py).
TRACED_MODULES = ("botocore",)

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=TRACED_MODULES)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
