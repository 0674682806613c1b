"""The ECS RunTask adapter of the sandbox provisioner port, on moto ECS."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from managed_agents.adapters.aws.ecs_sandbox_provisioner import (
    MAX_OVERRIDES_CHARS,
    NETWORKING_TAG,
    SESSION_TAG,
    WORK_TAG,
    EcsSandboxProvisioner,
    SandboxLaunchFailed,
    provisioner_from_settings,
)
from managed_agents.ports import SandboxLaunch
from managed_agents.sandbox.entrypoint import decode_packages
from managed_agents.settings import EcsSandboxSettings
from tests.contract.conftest import fake_aws_env

REGION = "us-east-1"


@dataclass
class Ecs:
    client: Any
    provisioner: EcsSandboxProvisioner
    cluster: str

    def running(self) -> list[dict[str, Any]]:
        arns = self.client.list_tasks(cluster=self.cluster, desiredStatus="RUNNING")["taskArns"]
        if not arns:
            return []
        tasks: list[dict[str, Any]] = self.client.describe_tasks(cluster=self.cluster, tasks=arns, include=["TAGS"])[
            "tasks"
        ]
        return [t for t in tasks if t["desiredStatus"] == "RUNNING"]  # (moto advances lastStatus on every describe)


@pytest.fixture
def ecs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ecs]:
    fake_aws_env(monkeypatch)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="sandbox", Description="sandbox", VpcId=vpc)["GroupId"]
        client = boto3.client("ecs", region_name=REGION)
        client.create_cluster(clusterName="sandboxes")
        task_def = client.register_task_definition(
            family="sandbox",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="1024",
            memory="2048",
            containerDefinitions=[{"name": "sandbox", "image": "sandbox:1", "cpu": 1024, "memory": 2048}],
        )["taskDefinition"]["taskDefinitionArn"]
        provisioner = EcsSandboxProvisioner(
            cluster="sandboxes",
            task_definition=task_def,
            subnets=[subnet],
            security_groups=[group],
            api_url="https://api.example.test/live",
            idle_seconds=120,
            ecs_client=client,
        )
        yield Ecs(client, provisioner, "sandboxes")


def _spec(session: str, work: str) -> SandboxLaunch:
    return SandboxLaunch(
        work_id=work,
        environment_id="env_1",
        session_id=session,
        secret="c2VjcmV0",
        api_url="http://ignored-when-the-provisioner-knows-its-url",
        packages={"pip": ["rich"]},
        networking={"type": "limited"},
    )


def _exit(work_id: str, code: int, detail: str) -> None:
    raise AssertionError("Fargate tasks end asynchronously; launch never calls on_exit")


def test_launch_runs_one_task_whose_environment_is_the_work_item_only(ecs: Ecs) -> None:
    # Given the RunTask requests ECS receives
    sent: list[dict[str, Any]] = []
    ecs.client.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: sent.append(params))
    # When a session's sandbox is launched
    ecs.provisioner.launch(_spec("sesn_a", "work_a"), _exit)
    # Then one Fargate task runs in the sandbox subnets, tagged with its session and work item
    (task,) = ecs.running()
    tags = {t["key"]: t["value"] for t in task["tags"]}
    assert tags[SESSION_TAG] == "sesn_a" and tags[WORK_TAG] == "work_a"
    (request,) = sent
    assert request["launchType"] == "FARGATE" and request["startedBy"] == "sesn_a"
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    # And its container overrides carry only the work coordinates, the secret and the worker's settings
    override, init = request["overrides"]["containerOverrides"]
    assert override["name"] == "sandbox" and set(override) == {"name", "environment"}
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert env == {
        "ANTHROPIC_BASE_URL": "https://api.example.test/live",
        "ANTHROPIC_WORK_ID": "work_a",
        "ANTHROPIC_ENVIRONMENT_ID": "env_1",
        "ANTHROPIC_SESSION_ID": "sesn_a",
        "ANTHROPIC_WORK_SECRET": "c2VjcmV0",
        "MANAGED_AGENTS_SANDBOX_IDLE_SECONDS": "120",
        "MANAGED_AGENTS_SANDBOX_PACKAGES": json.dumps({"pip": ["rich"]}, separators=(",", ":")),
    }
    # And the init container's, where to read resources from, without a token (the session has none)
    assert init["name"] == "init"
    assert {e["name"]: e["value"] for e in init["environment"]} == {
        "ANTHROPIC_BASE_URL": "https://api.example.test/live",
        "ANTHROPIC_ENVIRONMENT_ID": "env_1",
        "ANTHROPIC_WORK_ID": "work_a",
    }


def test_the_materialization_token_goes_to_the_init_container_only(ecs: Ecs) -> None:
    sent: list[dict[str, Any]] = []
    ecs.client.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: sent.append(params))
    # When a sandbox is launched for a session with resources, beside the longest package list that fits
    packages = {"pip": [f"company-internal-package-{i}==1.{i}.0" for i in range(900)]}
    token = "wi-ma-" + "t" * 43
    ecs.provisioner.launch(replace(_spec("sesn_r", "work_r"), init_token=token, packages=packages), _exit)
    # Then only the init container's overrides hold the token, and the overrides stay under the ECS cap
    (request,) = sent
    sandbox, init = request["overrides"]["containerOverrides"]
    assert (
        token not in json.dumps(sandbox)
        and {"name": "MANAGED_AGENTS_INIT_TOKEN", "value": token} in init["environment"]
    )
    assert len(json.dumps(request["overrides"], separators=(",", ":"))) <= MAX_OVERRIDES_CHARS


def test_stop_stops_only_the_sessions_task_serving_that_work(ecs: Ecs) -> None:
    # Given two sessions' sandboxes, and an older work item of the first session
    ecs.provisioner.launch(_spec("sesn_a", "work_a1"), _exit)
    ecs.provisioner.launch(_spec("sesn_a", "work_a2"), _exit)
    ecs.provisioner.launch(_spec("sesn_b", "work_b"), _exit)
    # When the first work item of session a stops
    ecs.provisioner.stop("sesn_a", "work_a1")
    # Then only its task was stopped
    left = sorted({t["key"]: t["value"] for t in task["tags"]}[WORK_TAG] for task in ecs.running())
    assert left == ["work_a2", "work_b"]
    # And stopping the whole session stops the rest of it, not the other session
    ecs.provisioner.stop("sesn_a", None)
    assert [{t["key"]: t["value"] for t in task["tags"]}[WORK_TAG] for task in ecs.running()] == ["work_b"]


def test_a_task_definition_ecs_does_not_know_is_a_readable_launch_failure(ecs: Ecs) -> None:
    # Given a provisioner pointed at a task definition that does not exist
    ecs.provisioner.task_definition = "no-such-family:1"
    # When it launches, then the error names the RunTask failure
    with pytest.raises(SandboxLaunchFailed, match=r"^ECS RunTask failed \("):
        ecs.provisioner.launch(_spec("sesn_a", "work_a"), _exit)
    assert ecs.running() == []


def test_each_networking_policy_gets_its_own_security_group(ecs: Ecs) -> None:
    # Given a deployment with one security group per networking policy (stacks/constructs/sandbox.py)
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.0.0.0/16"]}])["Vpcs"][0]["VpcId"]
    open_group = ec2.create_security_group(GroupName="sbx-open", Description="all egress", VpcId=vpc)["GroupId"]
    https_group = ec2.create_security_group(GroupName="sbx-https", Description="443 only", VpcId=vpc)["GroupId"]
    ecs.provisioner.security_groups = [open_group]
    ecs.provisioner.limited_security_groups = [https_group]
    sent: list[dict[str, Any]] = []
    ecs.client.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: sent.append(params))
    # When sandboxes of a limited, an unrestricted and a networking-less (API default: unrestricted) environment start
    for session, networking in (("sesn_l", {"type": "limited"}), ("sesn_u", {"type": "unrestricted"}), ("sesn_d", {})):
        spec = _spec(session, f"work_{session}")
        ecs.provisioner.launch(replace(spec, networking=networking), _exit)
    # Then RunTask attached the group of each one's policy, and the task is tagged with it
    groups = {p["startedBy"]: p["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] for p in sent}
    assert groups == {"sesn_l": [https_group], "sesn_u": [open_group], "sesn_d": [open_group]}
    policies = {
        {t["key"]: t["value"] for t in task["tags"]}[SESSION_TAG]: {t["key"]: t["value"] for t in task["tags"]}[
            NETWORKING_TAG
        ]
        for task in ecs.running()
    }
    assert policies == {"sesn_l": "limited", "sesn_u": "unrestricted", "sesn_d": "unrestricted"}


def test_an_unknown_networking_policy_starts_no_task(ecs: Ecs) -> None:
    spec = _spec("sesn_x", "work_x")
    with pytest.raises(SandboxLaunchFailed, match=r"networking type 'open' is not one of unrestricted, limited"):
        ecs.provisioner.launch(replace(spec, networking={"type": "open"}), _exit)
    assert ecs.running() == []


def test_settings_without_a_limited_group_use_the_one_group_for_every_policy() -> None:
    # Given the provisioner Lambda's settings naming one group only (a deployment that has one)
    settings = EcsSandboxSettings(
        ecs_cluster="c", sandbox_task_definition="t:1", sandbox_subnets="subnet-1", sandbox_security_group="sg-one"
    )
    provisioner = provisioner_from_settings(settings, ecs_client=object())  # type: ignore[arg-type]
    # Then both policies get that group; with a limited group configured, limited sandboxes get it
    assert provisioner.security_groups_for({"type": "limited"}) == ["sg-one"]
    both = settings.model_copy(update={"sandbox_limited_security_group": "sg-https"})
    provisioner = provisioner_from_settings(both, ecs_client=object())  # type: ignore[arg-type]
    assert provisioner.security_groups_for({"type": "limited"}) == ["sg-https"]
    assert provisioner.security_groups_for({"type": "unrestricted"}) == ["sg-one"]


def test_spot_sandboxes_run_with_a_capacity_provider_strategy_instead_of_a_launch_type(ecs: Ecs) -> None:
    # Given a provisioner set to FARGATE_SPOT (stack context sandboxSpot=true) and one on the default, FARGATE
    spot = ecs.provisioner
    spot.capacity_provider = "FARGATE_SPOT"
    sent: list[dict[str, Any]] = []
    ecs.client.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: sent.append(params))
    # When each starts a sandbox
    spot.launch(_spec("sesn_spot", "work_spot"), _exit)
    spot.capacity_provider = "FARGATE"
    spot.launch(_spec("sesn_od", "work_od"), _exit)
    # Then the Spot one asked for the FARGATE_SPOT provider (a launch type would override the strategy), the other
    # for the FARGATE launch type
    by_session = {p["startedBy"]: p for p in sent}
    assert by_session["sesn_spot"]["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert "launchType" not in by_session["sesn_spot"]
    assert by_session["sesn_od"]["launchType"] == "FARGATE" and "capacityProviderStrategy" not in by_session["sesn_od"]
    # And the settings carry it from the provisioner Lambda's environment
    settings = EcsSandboxSettings(
        ecs_cluster="c", sandbox_task_definition="t:1", sandbox_capacity_provider="FARGATE_SPOT"
    )
    assert provisioner_from_settings(settings, ecs_client=object()).capacity_provider == "FARGATE_SPOT"  # type: ignore[arg-type]


def test_a_long_package_list_goes_compressed_and_the_overrides_stay_under_the_ecs_cap(ecs: Ecs) -> None:
    # Given an environment whose packages list is far longer than RunTask's 8,192-character overrides
    packages = {"pip": [f"company-internal-package-{i}==1.{i}.0" for i in range(900)], "apt": ["ripgrep", "jq"]}
    assert len(json.dumps(packages)) > 3 * MAX_OVERRIDES_CHARS
    sent: list[dict[str, Any]] = []
    ecs.client.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: sent.append(params))
    # When its sandbox is launched
    ecs.provisioner.launch(replace(_spec("sesn_long", "work_long"), packages=packages), _exit)
    # Then the overrides fit, and the entrypoint reads back exactly the environment's packages
    (request,) = sent
    assert len(json.dumps(request["overrides"], separators=(",", ":"))) <= MAX_OVERRIDES_CHARS
    env = {e["name"]: e["value"] for e in request["overrides"]["containerOverrides"][0]["environment"]}
    assert decode_packages(env["MANAGED_AGENTS_SANDBOX_PACKAGES"]) == packages
    assert len(ecs.running()) == 1


def test_packages_that_do_not_fit_even_compressed_start_no_task_and_say_why(ecs: Ecs) -> None:
    # Given a list that compresses badly (random names) and is far over the cap
    rng = random.Random(7)
    names = ["".join(rng.choices(string.ascii_lowercase + string.digits, k=24)) for _ in range(800)]
    spec = replace(_spec("sesn_huge", "work_huge"), packages={"pip": names})
    # When its sandbox is launched, Then no task starts and the error names the cap
    with pytest.raises(SandboxLaunchFailed, match=r"over ECS's 8192 for RunTask overrides; list fewer packages"):
        ecs.provisioner.launch(spec, _exit)
    assert ecs.running() == []
