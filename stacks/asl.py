"""Read the "session run" definition back out of a synthesized template (for tests that execute it, e.g. in moto).

The template holds the ASL as `Fn::Join` of strings and intrinsics (`Ref`, `Fn::GetAtt`, pseudo parameters). These
helpers resolve them with values the caller supplies, so a test runs the definition CDK actually synthesized, not a
hand-written copy: when the stack changes, the test sees the change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"
PATH_METADATA = "aws:cdk:path"


def logical_ids_by_path(template: Mapping[str, Any]) -> dict[str, str]:
    """`{"ManagedAgents/ModelTurn/Live/Resource": "ModelTurnLive1A2B3C4D", ...}` from the CDK path metadata."""
    out: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        path = resource.get("Metadata", {}).get(PATH_METADATA)
        if path:
            out[str(path)] = logical_id
    return out


def logical_id(template: Mapping[str, Any], path_suffix: str) -> str:
    """The logical id of the one resource whose CDK path ends with `path_suffix` (e.g. "ModelTurn/Live/Resource")."""
    hits = [lid for path, lid in logical_ids_by_path(template).items() if path.endswith(path_suffix)]
    if len(hits) != 1:
        raise KeyError(f"{len(hits)} resources end with {path_suffix!r}")
    return hits[0]


def state_machine_definition(
    template: Mapping[str, Any],
    *,
    refs: Mapping[str, str],
    region: str = "us-east-1",
    account: str = "123456789012",
    partition: str = "aws",
) -> dict[str, Any]:
    """The state machine's ASL with every intrinsic resolved.

    `refs` maps a logical id (for `Ref`) or `"LogicalId.Attribute"` (for `Fn::GetAtt`) to the value to substitute,
    e.g. the ARN of the function a test created for a Lambda alias. An intrinsic with no value raises KeyError.
    """
    machines = [r for r in template.get("Resources", {}).values() if r.get("Type") == STATE_MACHINE_TYPE]
    if len(machines) != 1:
        raise ValueError(f"expected one state machine in the template, found {len(machines)}")
    pseudo = {
        "AWS::Partition": partition,
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::URLSuffix": "amazonaws.com",
    }
    text = render(machines[0]["Properties"]["DefinitionString"], lambda node: _resolve(node, refs, pseudo))
    definition: dict[str, Any] = json.loads(text)
    return definition


def render(value: Any, resolve: Callable[[Mapping[str, Any]], str]) -> str:
    """A CloudFormation string value (a literal or `Fn::Join`) with its intrinsics resolved by `resolve`."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render(part, resolve) for part in parts)
    if isinstance(value, Mapping):
        return resolve(value)
    raise TypeError(f"cannot render {value!r}")


def _resolve(node: Mapping[str, Any], refs: Mapping[str, str], pseudo: Mapping[str, str]) -> str:
    if "Ref" in node:
        name = str(node["Ref"])
        if name in pseudo:
            return pseudo[name]
        return refs[name]
    if "Fn::GetAtt" in node:
        target, attribute = node["Fn::GetAtt"]
        return refs[f"{target}.{attribute}"]
    raise KeyError(f"unsupported intrinsic {node!r}")
