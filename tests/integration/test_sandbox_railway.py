"""The Railway sandbox over HTTP: auth, GraphQL errors in Railway's shape, projects with their
production environment, workspace scoping, services deploying with statuses that move in time, stop and
restart, one volume per service, variables kept as digests, domains, the inventory and fault injection."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.railway_support import OTHER_WORKSPACE, WORKSPACE, serve_railway

IMAGE = "ghcr.io/relay/workspace:test"


class Gql:
    def __init__(self, base: str, token: str | None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base, timeout=10, headers=headers)

    def raw(self, query: str, **variables) -> httpx.Response:
        return self.http.post("/graphql/v2", json={"query": query, "variables": variables})

    def __call__(self, query: str, **variables) -> dict:
        response = self.raw(query, **variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def error(self, query: str, **variables) -> dict:
        response = self.raw(query, **variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["data"] is None and len(body["errors"]) == 1, body
        return body["errors"][0]


@pytest.fixture
def railway():
    with serve_railway() as (sandbox, base, token, other):
        gql, stranger = Gql(base, token), Gql(base, other)
        gql.sandbox, gql.stranger, gql.control = sandbox, stranger, httpx.Client(base_url=base, timeout=10)
        yield gql
        for client in (gql.http, stranger.http, gql.control):
            client.close()


PROJECT_CREATE = """mutation projectCreate($input: ProjectCreateInput!) {
  projectCreate(input: $input) { id name environments { edges { node { id name } } } }
}"""
SERVICE_CREATE = "mutation serviceCreate($input: ServiceCreateInput!) { serviceCreate(input: $input) { id name } }"
LATEST = """query serviceInstance($serviceId: String!, $environmentId: String!) {
  serviceInstance(serviceId: $serviceId, environmentId: $environmentId) {
    source { image } latestDeployment { id status deploymentStopped } }
}"""


def create_project(gql, name="ws-abc123"):
    project = gql(PROJECT_CREATE, input={"name": name, "workspaceId": WORKSPACE})["projectCreate"]
    return project["id"], project["environments"]["edges"][0]["node"]["id"]


def create_service(gql, project_id, environment_id, name="workspace", image=IMAGE):
    source = {"image": image} if image else None
    return gql(SERVICE_CREATE, input={"projectId": project_id, "environmentId": environment_id, "name": name,
                                      "source": source})["serviceCreate"]["id"]


def statuses_until(gql, service_id, environment_id, final, limit_s=5.0):
    seen = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = gql(LATEST, serviceId=service_id, environmentId=environment_id)["serviceInstance"][
            "latestDeployment"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == final:
            return seen
        time.sleep(0.01)
    raise AssertionError(f"never reached {final}: {seen}")


def inventory(gql):
    return gql.control.get("/_inventory").json()


# -- auth and errors -------------------------------------------------------------------------------


def test_the_api_needs_a_registered_token(railway):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = railway.control.post("/graphql/v2", json={"query": "query { projects { edges { node { id } } } }"},
                                        headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["message"] == "Not Authorized"
    team = railway.control.post("/graphql/v2", json={"query": "query { projects { edges { node { id } } } }"},
                                headers={"Team-Access-Token": railway.http.headers["Authorization"][7:]})
    assert team.status_code == 200 and team.json() == {"data": {"projects": {"edges": []}}}


def test_graphql_errors_come_in_railway_s_shape(railway):
    missing = railway.error("query project($id: String!) { project(id: $id) { id } }", id="nope")
    assert missing["message"] == "Project not found" and missing["path"] == ["project"]
    assert missing["extensions"]["code"] == "NOT_FOUND"

    project_id, _ = create_project(railway)
    unknown_field = railway.raw("query p($id: String!) { project(id: $id) { id colour } }", id=project_id)
    assert unknown_field.status_code == 400
    assert unknown_field.json()["errors"][0]["message"] == 'Cannot query field "colour" on type "Project".'
    unknown_root = railway.raw("mutation { machineCreate(input: {}) { id } }")
    assert unknown_root.status_code == 400
    assert unknown_root.json()["errors"][0]["message"] == 'Cannot query field "machineCreate" on type "Mutation".'
    syntax = railway.raw("query { project(id: ")
    assert syntax.status_code == 400 and syntax.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


# -- projects and environments ---------------------------------------------------------------------


def test_a_new_project_gets_a_production_environment_and_stays_in_its_workspace(railway):
    project_id, environment_id = create_project(railway)
    listed = railway("""query projects($workspaceId: String) { projects(workspaceId: $workspaceId) {
        edges { node { id name environments { edges { node { id name } } } } } } }""", workspaceId=WORKSPACE)
    node = listed["projects"]["edges"][0]["node"]
    assert node["id"] == project_id and node["name"] == "ws-abc123"
    assert node["environments"]["edges"] == [{"node": {"id": environment_id, "name": "production"}}]

    # Another workspace neither lists it nor reads it, nor creates into ours.
    assert railway.stranger("query { projects { edges { node { id } } } }")["projects"]["edges"] == []
    assert railway.stranger.error("query p($id: String!) { project(id: $id) { id } }",
                                  id=project_id)["message"] == "Not Authorized"
    refused = railway.stranger.error(PROJECT_CREATE, input={"name": "x", "workspaceId": WORKSPACE})
    assert refused["message"] == "Not Authorized"
    assert railway.error("query p($w: String) { projects(workspaceId: $w) { edges { node { id } } } }",
                         w=OTHER_WORKSPACE)["message"] == "Not Authorized"


def test_projects_are_paged_relay_style(railway):
    for n in range(3):
        create_project(railway, name=f"ws-page{n}")
    query = """query p($first: Int, $after: String) { projects(first: $first, after: $after) {
        edges { node { name } } pageInfo { hasNextPage endCursor } } }"""
    first = railway(query, first=2)["projects"]
    assert [e["node"]["name"] for e in first["edges"]] == ["ws-page0", "ws-page1"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = railway(query, first=2, after=first["pageInfo"]["endCursor"])["projects"]
    assert [e["node"]["name"] for e in rest["edges"]] == ["ws-page2"] and rest["pageInfo"]["hasNextPage"] is False


# -- services and deployments ----------------------------------------------------------------------


def test_a_service_with_an_image_deploys_and_its_status_moves_in_time(railway):
    project_id, environment_id = create_project(railway)
    service_id = create_service(railway, project_id, environment_id)
    assert statuses_until(railway, service_id, environment_id, "SUCCESS") == ["INITIALIZING", "DEPLOYING", "SUCCESS"]
    listed = railway("""query d($input: DeploymentListInput!) { deployments(input: $input, first: 5) {
        edges { node { id status deploymentStopped } } } }""",
                     input={"projectId": project_id, "serviceId": service_id, "environmentId": environment_id})
    (only,) = listed["deployments"]["edges"]
    assert only["node"]["status"] == "SUCCESS" and only["node"]["deploymentStopped"] is False

    # Stop: REMOVING → REMOVED; stopping again is refused; a new deploy brings it back.
    railway("mutation s($id: String!) { deploymentStop(id: $id) }", id=only["node"]["id"])
    assert statuses_until(railway, service_id, environment_id, "REMOVED")[0] == "REMOVING"
    again = railway.error("mutation s($id: String!) { deploymentStop(id: $id) }", id=only["node"]["id"])
    assert again["message"] == "Deployment is not running"
    new_id = railway("mutation d($s: String!, $e: String!) { serviceInstanceDeployV2(serviceId: $s, environmentId: $e) }",
                     s=service_id, e=environment_id)["serviceInstanceDeployV2"]
    assert statuses_until(railway, service_id, environment_id, "SUCCESS")[-1] == "SUCCESS"
    deployments = inventory(railway)["deployments"]
    assert [(d["id"], d["status"]) for d in deployments] == [(only["node"]["id"], "REMOVED"), (new_id, "SUCCESS")]


def test_a_new_deployment_replaces_the_running_one_and_restart_keeps_it(railway):
    project_id, environment_id = create_project(railway)
    service_id = create_service(railway, project_id, environment_id)
    statuses_until(railway, service_id, environment_id, "SUCCESS")
    first = inventory(railway)["deployments"][0]["id"]
    railway("mutation r($id: String!) { deploymentRestart(id: $id) }", id=first)
    assert inventory(railway)["deployments"] == [{"project": "ws-abc123", "id": first, "service_id": service_id,
                                                  "status": "SUCCESS", "stopped": False, "image": IMAGE,
                                                  "restarts": 1}]
    railway("mutation d($s: String!, $e: String!) { serviceInstanceRedeploy(serviceId: $s, environmentId: $e) }",
            s=service_id, e=environment_id)
    statuses_until(railway, service_id, environment_id, "SUCCESS")
    time.sleep(0.05)
    assert [d["status"] for d in inventory(railway)["deployments"]] == ["REMOVED", "SUCCESS"]


def test_an_empty_service_cannot_deploy_until_it_has_an_image_and_a_crashing_image_crashes(railway):
    project_id, environment_id = create_project(railway)
    service_id = create_service(railway, project_id, environment_id, image=None)
    deploy = "mutation d($s: String!, $e: String!) { serviceInstanceDeployV2(serviceId: $s, environmentId: $e) }"
    assert "no source" in railway.error(deploy, s=service_id, e=environment_id)["message"]
    railway("""mutation u($s: String!, $e: String!, $input: ServiceInstanceUpdateInput!) {
        serviceInstanceUpdate(serviceId: $s, environmentId: $e, input: $input) }""", s=service_id, e=environment_id,
            input={"source": {"image": "ghcr.io/relay/workspace:crash"},
                   "multiRegionConfig": {"europe-west4-drams3a": {"numReplicas": 1}}})
    railway(deploy, s=service_id, e=environment_id)
    assert statuses_until(railway, service_id, environment_id, "CRASHED")[-1] == "CRASHED"
    assert inventory(railway)["services"][0]["region"] == "europe-west4-drams3a"
    assert railway.error(SERVICE_CREATE, input={"projectId": project_id, "name": "workspace"})[
        "message"].startswith("Service name `workspace` is already taken")


def test_limits_are_validated(railway):
    project_id, environment_id = create_project(railway)
    service_id = create_service(railway, project_id, environment_id, image=None)
    limits = "mutation l($input: ServiceInstanceLimitsUpdateInput!) { serviceInstanceLimitsUpdate(input: $input) }"
    railway(limits, input={"serviceId": service_id, "environmentId": environment_id, "vCPUs": 2, "memoryGB": 2})
    assert railway.error(limits, input={"serviceId": service_id, "environmentId": environment_id, "vCPUs": 0})[
        "extensions"]["code"] == "BAD_USER_INPUT"
    service = inventory(railway)["services"][0]
    assert (service["vcpus"], service["memory_gb"]) == (2, 2)


# -- volumes, variables, domains -------------------------------------------------------------------


def test_one_volume_per_service_named_and_mounted(railway):
    project_id, environment_id = create_project(railway)
    service_id = create_service(railway, project_id, environment_id, image=None)
    create = "mutation v($input: VolumeCreateInput!) { volumeCreate(input: $input) { id name } }"
    volume = railway(create, input={"projectId": project_id, "environmentId": environment_id,
                                    "serviceId": service_id, "mountPath": "/data"})["volumeCreate"]
    assert volume["name"] != "workspace_data"  # Railway names it
    railway("mutation n($id: String!, $input: VolumeUpdateInput!) { volumeUpdate(volumeId: $id, input: $input) { name } }",
            id=volume["id"], input={"name": "workspace_data"})
    second = railway.error(create, input={"projectId": project_id, "environmentId": environment_id,
                                          "serviceId": service_id, "mountPath": "/other"})
    assert second["message"] == "Service already has a volume attached"
    assert railway.error(create, input={"projectId": project_id, "mountPath": "data"})["extensions"]["code"] == \
        "BAD_USER_INPUT"
    seen = railway("""query p($id: String!) { project(id: $id) { volumes { edges { node { id name
        volumeInstances { edges { node { serviceId mountPath sizeMB } } } } } } } }""", id=project_id)
    node = seen["project"]["volumes"]["edges"][0]["node"]
    assert node["name"] == "workspace_data"
    assert node["volumeInstances"]["edges"][0]["node"] == {"serviceId": service_id, "mountPath": "/data",
                                                           "sizeMB": 5000}
    # Deleting the service detaches the volume; deleting the volume removes it.
    railway("mutation d($id: String!) { serviceDelete(id: $id) }", id=service_id)
    assert inventory(railway)["volumes"][0]["service_id"] is None
    railway("mutation d($id: String!) { volumeDelete(volumeId: $id) }", id=volume["id"])
    assert railway.error("mutation d($id: String!) { volumeDelete(volumeId: $id) }", id=volume["id"])[
        "message"] == "Volume not found"


def test_variables_are_kept_as_digests_only(railway):
    project_id, environment_id = create_project(railway)
    service_id = create_service(railway, project_id, environment_id, image=None)
    secret = "rly_d1_" + "s" * 40
    railway("mutation v($input: VariableCollectionUpsertInput!) { variableCollectionUpsert(input: $input) }",
            input={"projectId": project_id, "environmentId": environment_id, "serviceId": service_id,
                   "variables": {"RELAY_DAEMON_KEY": secret, "MODE": "cloud"}, "skipDeploys": True})
    answer = railway("query v($p: String!, $e: String!, $s: String) { variables(projectId: $p, environmentId: $e, "
                     "serviceId: $s) }", p=project_id, e=environment_id, s=service_id)["variables"]
    assert sorted(answer) == ["MODE", "RELAY_DAEMON_KEY"] and secret not in str(answer)
    seen = inventory(railway)
    assert seen["variables"] == [{"project": "ws-abc123", "service_id": service_id, "name": "MODE"},
                                 {"project": "ws-abc123", "service_id": service_id, "name": "RELAY_DAEMON_KEY"}]
    assert secret not in str(seen) and secret not in str(vars(railway.sandbox))
    bad = railway.error("mutation v($input: VariableCollectionUpsertInput!) { variableCollectionUpsert(input: $input) }",
                        input={"projectId": project_id, "environmentId": environment_id, "variables": {"1BAD": "x"}})
    assert bad["extensions"]["code"] == "BAD_USER_INPUT"


def test_service_and_custom_domains(railway):
    project_id, environment_id = create_project(railway)
    service_id = create_service(railway, project_id, environment_id, image=None)
    domain = railway("mutation d($input: ServiceDomainCreateInput!) { serviceDomainCreate(input: $input) { id domain } }",
                     input={"serviceId": service_id, "environmentId": environment_id, "targetPort": 3888})[
        "serviceDomainCreate"]
    assert domain["domain"].startswith("workspace-production-") and domain["domain"].endswith(".up.railway.app")
    custom = railway("""mutation c($input: CustomDomainCreateInput!) { customDomainCreate(input: $input) {
        id domain status { dnsRecords { requiredValue } certificateStatus } } }""",
                     input={"projectId": project_id, "environmentId": environment_id, "serviceId": service_id,
                            "domain": "Agents.Example.com"})["customDomainCreate"]
    assert custom["domain"] == "agents.example.com"
    assert custom["status"]["dnsRecords"] == [{"requiredValue": domain["domain"]}]
    assert custom["status"]["certificateStatus"] == "CERTIFICATE_STATUS_TYPE_ISSUING"
    time.sleep(0.2)
    issued = railway("query c($id: String!, $p: String!) { customDomain(id: $id, projectId: $p) { status { "
                     "certificateStatus } } }", id=custom["id"], p=project_id)
    assert issued["customDomain"]["status"]["certificateStatus"] == "CERTIFICATE_STATUS_TYPE_VALID"
    listed = railway("""query d($p: String!, $e: String!, $s: String!) { domains(projectId: $p, environmentId: $e,
        serviceId: $s) { serviceDomains { id } customDomains { domain } } }""", p=project_id, e=environment_id,
                     s=service_id)["domains"]
    assert listed == {"serviceDomains": [{"id": domain["id"]}], "customDomains": [{"domain": "agents.example.com"}]}
    railway("mutation d($id: String!) { serviceDomainDelete(id: $id) }", id=domain["id"])
    railway("mutation d($id: String!) { customDomainDelete(id: $id) }", id=custom["id"])
    assert inventory(railway)["counts"]["domains"] == 0 and inventory(railway)["counts"]["custom_domains"] == 0


# -- control surface -------------------------------------------------------------------------------


def test_deleting_the_project_takes_everything_and_the_inventory_shows_it(railway):
    project_id, environment_id = create_project(railway)
    service_id = create_service(railway, project_id, environment_id)
    railway("mutation v($input: VolumeCreateInput!) { volumeCreate(input: $input) { id } }",
            input={"projectId": project_id, "serviceId": service_id, "mountPath": "/data"})
    railway("mutation d($input: ServiceDomainCreateInput!) { serviceDomainCreate(input: $input) { id } }",
            input={"serviceId": service_id, "environmentId": environment_id})
    counts = inventory(railway)["counts"]
    assert counts == {"projects": 1, "services": 1, "volumes": 1, "deployments": 1, "domains": 1,
                      "custom_domains": 0, "variables": 0}
    assert railway("mutation d($id: String!) { projectDelete(id: $id) }", id=project_id) == {"projectDelete": True}
    assert set(inventory(railway)["counts"].values()) == {0}
    assert railway.error("mutation d($id: String!) { projectDelete(id: $id) }", id=project_id)[
        "message"] == "Project not found"


def test_faults_config_and_reset(railway):
    railway.control.post("/_faults", json={"path_contains": "/graphql", "status": 503, "count": 1})
    assert railway.raw("query { projects { edges { node { id } } } }").status_code == 503
    assert railway.raw("query { projects { edges { node { id } } } }").status_code == 200
    assert railway.control.get("/_inventory").status_code == 200  # control paths are never faulted
    assert railway.control.post("/_config", json={"deploy_ms": 0}).json()["deploy_ms"] == 0
    assert railway.control.post("/_config", json={"typo_ms": 1}).status_code == 400
    create_project(railway)
    assert railway.control.post("/_reset").status_code == 204
    assert inventory(railway)["counts"]["projects"] == 0
    assert railway.sandbox.requests == 2  # the faulted request never reached the API
