"""Api: the regional REST API, streamed (responseTransferMode STREAM), in front of the API Lambda.

`GET /v1/sessions/{session_id}/events/stream` has a function of its own, the same code with less memory and only
read access: an open event stream (the sandbox worker holds one per session, and most clients do) keeps its Lambda
billed for the stream's whole duration, while it mostly waits between reads of the log.

The API Lambda runs the same ASGI app as the embedded server through Lambda Web Adapter (LWA): the handler is
`functions/api/run.sh`, which starts uvicorn on `managed_agents.api.lambda_app:app`; LWA forwards each invocation to
it and streams the response (`AWS_LWA_INVOKE_MODE=response_stream`), so SSE works through API Gateway.
Authentication is the app's own (Authorization: Bearer / x-api-key API keys), exactly as the official SDK sends it.
"""

from __future__ import annotations

import json

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from managed_agents.domain.errors import RequestTooLarge, too_large_message
from managed_agents.settings import LAMBDA_MAX_REQUEST_BYTES
from stacks.config import PlatformConfig
from stacks.constructs.python_function import PythonFunction
from stacks.nag import acknowledge

LWA_LAYER_ACCOUNT = "753240598075"
API_HANDLER = "functions/api/run.sh"
APP_PORT = "8080"


def lwa_layer_arn(config: PlatformConfig) -> str:
    if config.lwa_layer_arn:
        return config.lwa_layer_arn
    layer = f"LambdaAdapterLayerArm64:{config.lwa_layer_version}"
    return f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{LWA_LAYER_ACCOUNT}:layer:{layer}"


def lwa_environment() -> dict[str, str]:
    return {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_PORT": APP_PORT,
        # Streamed responses are never compressed by LWA; keep the readiness probe cheap and status-agnostic.
        "AWS_LWA_READINESS_CHECK_PROTOCOL": "tcp",
    }


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        code: lambda_.Code,
        environment: dict[str, str],
        stream_environment: dict[str, str],
    ) -> None:
        super().__init__(scope, id_)
        layer = lambda_.LayerVersion.from_layer_version_arn(self, "WebAdapter", lwa_layer_arn(config))

        def app_function(
            id_: str, description: str, memory_mb: int, env: dict[str, str], *, snap_start: bool
        ) -> PythonFunction:
            """The ASGI app behind Lambda Web Adapter (the API function, or the event-stream function)."""
            return PythonFunction(
                self,
                id_,
                config=config,
                code=code,
                handler=API_HANDLER,
                description=description,
                memory_mb=memory_mb,
                timeout=Duration.seconds(config.api_timeout_seconds),
                environment={**lwa_environment(), **env},
                layers=[layer],
                snap_start=snap_start,
            )

        self.function = app_function(
            "ApiFunction",
            "Managed Agents API: the ASGI app behind Lambda Web Adapter (response streaming)",
            config.api_memory_mb,
            environment,
            snap_start=True,  # every SDK call may meet a cold start: ~0.9 s of init on demand (bench/lambda_cold_path)
        )
        self.stream_function = app_function(
            "StreamFunction",
            "Managed Agents API, event streams only (GET /v1/sessions/{id}/events/stream): read-only",
            config.stream_memory_mb,
            stream_environment,
            # A stream's first byte may wait for an on-demand init (~1 s), once per stream (each lasts up to 14
            # minutes); a snapshot would cost its GB-seconds all month, idle or not.
            snap_start=False,
        )
        removal = config.removal
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=config.log_retention, removal_policy=removal)
        integration = apigw.LambdaIntegration(
            self.function.alias,
            proxy=True,
            response_transfer_mode=apigw.ResponseTransferMode.STREAM,
            timeout=Duration.seconds(config.api_timeout_seconds),
            scope_permission_to_method=False,
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{config.prefix}-api",
            description="Managed Agents API (Anthropic Managed Agents wire format)",
            endpoint_configuration=apigw.EndpointConfiguration(types=[apigw.EndpointType.REGIONAL]),
            cloud_watch_role=config.api_execution_logging,
            deploy_options=apigw.StageOptions(
                stage_name=config.api_stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=(
                    apigw.MethodLoggingLevel.ERROR if config.api_execution_logging else apigw.MethodLoggingLevel.OFF
                ),
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=config.api_throttle_rate,
                throttling_burst_limit=config.api_throttle_burst,
            ),
            default_integration=integration,
        )
        # {proxy+} ANY; CDK also adds ANY on "/" since the proxy hangs off the root.
        self.rest_api.root.add_proxy(any_method=True)
        # The event stream's own resource (more specific than {proxy+}, so API Gateway routes it here).
        stream = self.rest_api.root.resource_for_path("v1/sessions/{session_id}/events/stream")
        stream.add_method(
            "GET",
            apigw.LambdaIntegration(
                self.stream_function.alias,
                proxy=True,
                response_transfer_mode=apigw.ResponseTransferMode.STREAM,
                timeout=Duration.seconds(config.api_timeout_seconds),
                scope_permission_to_method=False,
            ),
        )
        self._gateway_responses()
        self.stage = self.rest_api.deployment_stage
        if config.waf_web_acl_arn:
            wafv2.CfnWebACLAssociation(
                self, "WafAssociation", resource_arn=self.stage.stage_arn, web_acl_arn=config.waf_web_acl_arn
            )
        self._acknowledge(config)

    @property
    def url(self) -> str:
        return self.rest_api.url

    def _gateway_responses(self) -> None:
        """What API Gateway answers itself, in the API's error envelope, for requests the function never sees.

        A body over LAMBDA_MAX_REQUEST_BYTES reaches the function and gets its 413 (RequestSizeLimitMiddleware). A
        larger one whose invocation Lambda refuses (6 MB for the whole event) is an integration failure, which API
        Gateway cannot tell apart from the others, so its message names the usual cause and the limit; over API
        Gateway's own 10 MB it is REQUEST_TOO_LARGE, a 413.
        """
        limit = LAMBDA_MAX_REQUEST_BYTES
        responses = {
            "RequestTooLarge": (
                apigw.ResponseType.REQUEST_TOO_LARGE,
                "413",
                RequestTooLarge.error_type,
                too_large_message(limit),
            ),
            "IntegrationFailure": (
                apigw.ResponseType.INTEGRATION_FAILURE,
                "502",
                "api_error",
                "the API function could not answer this request. If its body was large, that is the cause: a Lambda "
                "invocation carries at most 6 MB, and " + too_large_message(limit).split("; ", 1)[1],
            ),
        }
        for id_, (response_type, status, error_type, message) in responses.items():
            envelope = {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": "$context.requestId",
            }
            self.rest_api.add_gateway_response(
                id_,
                type=response_type,
                status_code=status,
                response_headers={"request-id": "context.requestId", "content-type": "'application/json'"},
                templates={"application/json": json.dumps(envelope, separators=(",", ":"))},
            )

    def _acknowledge(self, config: PlatformConfig) -> None:
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG2",
            "Proxy integration: the ASGI app validates every request body (pydantic) and answers with the Anthropic "
            "API error envelope the official SDK parses; API Gateway validation would answer in another shape.",
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(
                self.rest_api,
                rule,
                "The app authenticates every request with the platform's own API keys (Authorization: Bearer or "
                "x-api-key), as the Anthropic API does; the official SDK cannot sign with SigV4 or Cognito tokens.",
            )
        if not config.waf_web_acl_arn:
            acknowledge(
                self.rest_api,
                "AwsSolutions-APIG3",
                "A WAF web ACL is optional (it has a monthly cost): set the wafWebAclArn context value to associate "
                "one with the stage; the stage itself is throttled.",
            )
        if not config.api_execution_logging:
            acknowledge(
                self.rest_api,
                "AwsSolutions-APIG6",
                "Execution logging is off by the apiExecutionLogging context value; access logging stays on.",
            )
        else:
            acknowledge(
                self.rest_api,
                "AwsSolutions-IAM4",
                "The account-level API Gateway CloudWatch role uses AWS's managed "
                "AmazonAPIGatewayPushToCloudWatchLogs policy, the documented policy for that role.",
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
            )
