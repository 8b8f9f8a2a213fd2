"""Small readers over the synthesized template (a dict of CloudFormation resources)."""

from __future__ import annotations

import json


def of_type(resources: dict, type_name: str) -> dict[str, dict]:
    return {lid: res for lid, res in resources.items() if res["Type"] == type_name}


def props(resource: dict) -> dict:
    return resource.get("Properties", {})


def relay_functions(resources: dict) -> dict[str, dict]:
    """Our functions (built by RelayFunction), not CDK's own providers."""
    return {
        lid: res
        for lid, res in of_type(resources, "AWS::Lambda::Function").items()
        if "POWERTOOLS_SERVICE_NAME" in props(res).get("Environment", {}).get("Variables", {})
    }


def service_name(function: dict) -> str:
    return props(function)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]


def role_of(function: dict) -> str:
    return props(function)["Role"]["Fn::GetAtt"][0]


def statements_by_role(resources: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        for role in props(policy)["Roles"]:
            found.setdefault(role["Ref"], []).extend(props(policy)["PolicyDocument"]["Statement"])
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def mentions(value, logical_id: str) -> bool:
    return f'"{logical_id}"' in json.dumps(value)


def key_for_alias(resources: dict, alias: str) -> str:
    for res in of_type(resources, "AWS::KMS::Alias").values():
        if props(res)["AliasName"] == alias:
            return props(res)["TargetKeyId"]["Fn::GetAtt"][0]
    raise AssertionError(f"no KMS alias {alias}")
