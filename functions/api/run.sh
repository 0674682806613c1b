#!/bin/sh
# API Lambda entry point (the Lambda "handler"): Lambda Web Adapter (layer, AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap)
# runs this script at init, waits until the port accepts connections, then forwards every invocation to it and
# streams the responses back (AWS_LWA_INVOKE_MODE=response_stream).
set -eu
cd "${LAMBDA_TASK_ROOT:-$(dirname "$0")/../..}"
export PYTHONPATH="${LAMBDA_TASK_ROOT:-$PWD}${PYTHONPATH:+:$PYTHONPATH}"
exec python -m uvicorn managed_agents.api.lambda_app:app \
  --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" \
  --no-access-log --no-server-header --timeout-keep-alive 60
