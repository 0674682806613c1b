"""SessionLoop: the Standard state machine "session run" and the Lambdas it drives.

Contract with functions/model_turn/handler.py and functions/tool_wait/handler.py (each `handler(event, context)`)
and with the orchestrator (managed_agents/adapters/aws/step_functions_orchestrator.py), which starts executions with
the input `{"session_id", "turns": 0, "execution": <its claimed execution name>}`:

* ModelTurn input `{"session_id", "turns", "execution", "turns_per_execution"}` → output `{"session_id", "turns",
  "outcome", "wait_seconds", "reason", "continue_as"}`, `outcome` one of run_again | retry_after | wait_for_tools |
  parked; `turns` includes the turn just run. `execution` is the run's owner token, `$$.Execution.Input.execution`:
  the name claimed on the session record for this execution. `turns_per_execution` is maxTurnsPerExecution: a turn
  that runs again at that count first claims the run for a continuation and returns its name as `continue_as`.
* ToolWait input `{"session_id", "task_token"}`: parks the token; the API releases it (SendTaskSuccess) when the tool
  results are logged. The task times out after `wait_seconds` (and, if `toolHeartbeatSeconds` is set, after a missed
  heartbeat); the timeout goes back to ModelTurn, which turns the lost sandbox into an error result. A wait whose
  deadline already passed (`wait_seconds` < 1, not a valid timeout) goes straight back to ModelTurn.
* ReportFailure (`report_failure` in the model_turn module) input `{"session_id", "error": {"Error", "Cause"},
  "execution"}`: appends session.error + idle and releases the run it owned (a wake that came meanwhile starts a new
  execution: StartExecution, so the function gets the state machine's ARN). Then the execution fails.

Loop: ModelTurn → NextStep: run_again → ModelTurn (or, with `continue_as`, ContinueAsNew: the execution of that name
with `{"session_id", "turns": 0, "execution": continue_as}`, then Continued: the record names the continuation as
the owner before it starts, so a wake never takes the finished original for a lost run); retry_after →
RetryWait (SecondsPath) → ModelTurn; wait_for_tools → ToolWait → ModelTurn; parked → Parked. State carries the
pointers above, never payloads (ToolWait's result is discarded; catches keep the error under `$.error`).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Fn, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from managed_agents.adapters.aws.lambda_invoke import RETRYABLE_INVOKE_ERRORS
from stacks.config import (
    STATE_CONTINUE_AS_NEW,
    STATE_CONTINUED,
    STATE_FAILED,
    STATE_MODEL_TURN,
    STATE_NEXT_STEP,
    STATE_PARKED,
    STATE_REPORT_FAILURE,
    STATE_RETRY_WAIT,
    STATE_TOOL_WAIT,
    STATE_UNKNOWN_OUTCOME,
    PlatformConfig,
)
from stacks.constructs.python_function import PythonFunction
from stacks.nag import acknowledge

_TIMEOUT_ERRORS = ["States.Timeout", "States.HeartbeatTimeout"]
# What Lambda refuses before it runs the function, for reasons that pass (throttling, a SnapStart version idle for
# 14 days being initialized again, a deployment updating the function, ...): the same codes every boto3 Invoke of
# ours retries (managed_agents/adapters/aws/lambda_invoke.py), as the task errors Step Functions names them. The
# task's default Retry (CDK's retry_on_service_exceptions) covers Lambda's 500s.
LAMBDA_NOT_READY_ERRORS = sorted(f"Lambda.{code}" for code in RETRYABLE_INVOKE_ERRORS)


def retry_lambda_not_ready(task: tasks.LambdaInvoke) -> None:
    """Up to 6 more attempts, 2 s doubling with full jitter: at most about 2 minutes, what a SnapStart version may
    take to become Active again."""
    task.add_retry(
        errors=LAMBDA_NOT_READY_ERRORS,
        interval=Duration.seconds(2),
        max_attempts=6,
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
    )


def state_machine_name(config: PlatformConfig) -> str:
    return f"{config.prefix}-session-run"


def log_group_name(scope: Construct, config: PlatformConfig) -> str:
    """`/aws/vendedlogs/states/{prefix}-session-run-{id}`: the prefix CloudWatch Logs recommends for vended logs (its
    resource policy then covers them all at once), and `id` from the stack's id, new at each creation of the stack, so
    a log group kept from a destroyed stack never collides with the next one's."""
    stack_uuid = Fn.select(2, Fn.split("/", Stack.of(scope).stack_id))
    return Fn.join(
        "", [f"/aws/vendedlogs/states/{state_machine_name(config)}-", Fn.select(4, Fn.split("-", stack_uuid))]
    )


def state_machine_arn(scope: Construct, config: PlatformConfig) -> str:
    """The ARN from the fixed name: callers (API, triggers, the machine itself) need it without a reference cycle."""
    return Stack.of(scope).format_arn(
        service="states",
        resource="stateMachine",
        resource_name=state_machine_name(config),
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def executions_arn(scope: Construct, config: PlatformConfig) -> str:
    return Stack.of(scope).format_arn(
        service="states",
        resource="execution",
        resource_name=f"{state_machine_name(config)}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class SessionLoop(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        model_turn: PythonFunction,
        report_failure: PythonFunction,
        tool_wait: PythonFunction,
    ) -> None:
        super().__init__(scope, id_)
        self.arn = state_machine_arn(self, config)
        owner = sfn.JsonPath.string_at("$$.Execution.Input.execution")
        pointers = sfn.TaskInput.from_object(
            {
                "session_id": sfn.JsonPath.string_at("$.session_id"),
                "turns": sfn.JsonPath.number_at("$.turns"),
                "execution": owner,
                "turns_per_execution": config.max_turns_per_execution,
            }
        )

        turn = tasks.LambdaInvoke(
            self,
            STATE_MODEL_TURN,
            lambda_function=model_turn.alias,
            payload=pointers,
            output_path="$.Payload",
            comment="One model turn of the harness; returns the next step",
        )
        retry_lambda_not_ready(turn)
        # A turn is safe to re-run (deterministic event ids, conditional appends): retry a crashed or timed-out one.
        turn.add_retry(
            errors=["Sandbox.Timedout", "Lambda.Unknown"], interval=Duration.seconds(2), max_attempts=2, backoff_rate=2
        )

        failed = sfn.Fail(
            self, STATE_FAILED, error="SessionRunFailed", cause="The session run failed; see the session's events"
        )
        report = tasks.LambdaInvoke(
            self,
            STATE_REPORT_FAILURE,
            lambda_function=report_failure.alias,
            payload=sfn.TaskInput.from_object(
                {
                    "session_id": sfn.JsonPath.string_at("$.session_id"),
                    "error": sfn.JsonPath.object_at("$.error"),
                    "execution": owner,
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
            comment="Append session.error and go idle, as the embedded runtime does; release the session's run",
        )
        retry_lambda_not_ready(report)
        report.add_catch(failed, errors=["States.ALL"], result_path="$.report_error")
        report.next(failed)

        retry_wait = sfn.Wait(
            self, STATE_RETRY_WAIT, time=sfn.WaitTime.seconds_path("$.wait_seconds"), comment="Backoff, then retry"
        )
        retry_wait.next(turn)

        tool_wait_task = tasks.LambdaInvoke(
            self,
            STATE_TOOL_WAIT,
            lambda_function=tool_wait.alias,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {"session_id": sfn.JsonPath.string_at("$.session_id"), "task_token": sfn.JsonPath.task_token}
            ),
            task_timeout=sfn.Timeout.at("$.wait_seconds"),
            heartbeat_timeout=(
                sfn.Timeout.duration(Duration.seconds(config.tool_heartbeat_seconds))
                if config.tool_heartbeat_seconds
                else None
            ),
            result_path=sfn.JsonPath.DISCARD,
            comment="Wait for built-in tool results; the API sends the task token back when they are logged",
        )
        retry_lambda_not_ready(tool_wait_task)
        tool_wait_task.add_catch(turn, errors=_TIMEOUT_ERRORS, result_path="$.tool_wait_error")
        tool_wait_task.next(turn)

        successor = sfn.JsonPath.string_at("$.continue_as")
        continue_as_new = tasks.StepFunctionsStartExecution(
            self,
            STATE_CONTINUE_AS_NEW,
            state_machine=sfn.StateMachine.from_state_machine_arn(self, "Self", self.arn),
            name=successor,
            input=sfn.TaskInput.from_object(
                {"session_id": sfn.JsonPath.string_at("$.session_id"), "turns": 0, "execution": successor}
            ),
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            result_path=sfn.JsonPath.DISCARD,
            comment="Restart as the execution ModelTurn handed the run to (history limit); state is the session id",
        )
        continue_as_new.add_retry(errors=["States.TaskFailed"], interval=Duration.seconds(1), max_attempts=3)
        continue_as_new.next(sfn.Succeed(self, STATE_CONTINUED))

        unknown = sfn.Pass(
            self,
            STATE_UNKNOWN_OUTCOME,
            result=sfn.Result.from_object(
                {"Error": "UnknownOutcome", "Cause": "ModelTurn returned an outcome the state machine does not know"}
            ),
            result_path="$.error",
        )
        unknown.next(report)

        for task in (turn, tool_wait_task, continue_as_new):
            task.add_catch(report, errors=["States.ALL"], result_path="$.error")

        outcome = "$.outcome"
        choice = (
            sfn.Choice(self, STATE_NEXT_STEP, comment="Route on ModelTurn's outcome")
            .when(
                # (ModelTurn always writes `continue_as`, null when none: CloudFormation updates the function's
                # alias before the definition that refers to it, so this definition never meets an older output)
                sfn.Condition.and_(
                    sfn.Condition.string_equals(outcome, "run_again"), sfn.Condition.is_string("$.continue_as")
                ),
                continue_as_new,
            )
            .when(sfn.Condition.string_equals(outcome, "run_again"), turn)
            .when(sfn.Condition.string_equals(outcome, "retry_after"), retry_wait)
            .when(
                sfn.Condition.and_(
                    sfn.Condition.string_equals(outcome, "wait_for_tools"),
                    sfn.Condition.number_less_than("$.wait_seconds", 1),
                ),
                turn,
            )
            .when(sfn.Condition.string_equals(outcome, "wait_for_tools"), tool_wait_task)
            .when(sfn.Condition.string_equals(outcome, "parked"), sfn.Succeed(self, STATE_PARKED))
            .otherwise(unknown)
        )
        turn.next(choice)

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=log_group_name(self, config),
            retention=config.log_retention,
            removal_policy=config.removal,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name(config),
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(turn),
            comment="session run: model turns until the session parks; see stacks/constructs/session_loop.py",
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "CloudWatch Logs delivery (logs:CreateLogDelivery etc.) and X-Ray (PutTraceSegments etc.) support no "
            "resource-level permissions; CDK adds exactly these statements for state machine logging and tracing.",
            "Resource::*",
        )
