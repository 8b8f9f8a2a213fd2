"""The Railway provisioner: Railway's public GraphQL API (``RELAY_RAILWAY_API_URL``, by default
https://backboard.railway.com/graphql/v2) behind the same step-by-step interface as Fly
(docs/design/compute-provisioning.md, "Railway").

How the interface maps onto Railway's model (a workspace = one project, one service):

    ensure_app      a project named after the app name in our Railway workspace; its ``production``
                    environment is where everything else lives (looked up by name, kept per process)
    ensure_ips      a service domain (``*.up.railway.app``): Railway gives no IP addresses, so the one
                    ``IpRef`` is the domain with ``type="domain"``
    ensure_volume   the service's volume (Railway allows one per service), mounted at ``mount_path``
    set_secrets     one ``variableCollectionUpsert`` of service variables (``skipDeploys``: the deploy is ours)
    ensure_machine  the service's image, region, limits and health check, then ``serviceInstanceDeployV2``;
                    the "machine id" is the service id, its ``instance_id`` the latest deployment's id
    machine_state   from the latest deployment's status (SUCCESS → started, DEPLOYING → starting, ...)
    start/stop/...  ``serviceInstanceDeployV2`` / ``deploymentStop`` / ``deploymentRestart``
    deletes         ``serviceDelete`` / ``volumeDelete`` / ``serviceDomainDelete`` / ``projectDelete``;
                    "not found" (or nothing of that name left to find) is done

The empty service is created by the first step that needs it (domains, volumes and variables all hang
off a service), named ``service_name``; ``ensure_machine`` gives it its image.

Idempotency comes from looking first, by name: a project of our app name in our workspace can only be
an earlier attempt of this step (the name embeds the random workspace id), so it is adopted; if two
attempts raced and made two, the oldest wins and ours is deleted. Reads and idempotent mutations
(upserts, updates, deletes) are retried here on 429/5xx/network errors; creates and deploys are not (a
create whose answer was lost may have worked: the step's next attempt looks first instead).

Errors: a GraphQL error (HTTP 200 ``errors``) or a 4xx is ``ProviderRejected`` carrying Railway's
message; 429, 5xx and network failures are ``UpstreamUnavailable`` (retryable). The token lives only in
the client's default headers; variable values travel in one request body and are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import time

import httpx

from relay_cloud.adapters.providers import RETRYABLE_STATUS, USER_AGENT, UpstreamUnavailable
from relay_cloud.domain.compute import AppRef, IpRef, MachineRef, MachineSpec, ProviderRejected, VolumeRef
from relay_cloud.domain.errors import ValidationFailed

logger = logging.getLogger(__name__)

PROVIDER = "railway"
DEFAULT_API_URL = "https://backboard.railway.com/graphql/v2"
ENVIRONMENT = "production"  # the environment projectCreate makes (ProjectCreateInput.defaultEnvironmentName)
MAX_WAIT_S = 60
_NOT_FOUND = re.compile(r"\bnot found\b", re.IGNORECASE)

# Railway's deployment statuses (docs.railway.com, "Manage Deployments") read as machine states.
STATES = {
    "QUEUED": "starting", "WAITING": "starting", "NEEDS_APPROVAL": "starting", "INITIALIZING": "starting",
    "BUILDING": "starting", "DEPLOYING": "starting", "SUCCESS": "started", "SLEEPING": "suspended",
    "REMOVING": "stopping", "REMOVED": "stopped", "SKIPPED": "stopped", "FAILED": "failed", "CRASHED": "failed",
}

# Railway regions for the Fly-style region codes the rest of the system speaks (RELAY_WORKSPACE_REGION).
REGIONS = {
    **dict.fromkeys(("iad", "ewr", "bos", "yyz", "yul", "atl", "mia", "ord", "dfw"), "us-east4-eqdc4a"),
    **dict.fromkeys(("sjc", "lax", "sea", "den", "phx", "qro", "gdl"), "us-west2"),
    **dict.fromkeys(("ams", "fra", "lhr", "cdg", "arn", "mad", "waw", "otp"), "europe-west4-drams3a"),
    **dict.fromkeys(("sin", "nrt", "hkg", "syd", "bom"), "asia-southeast1-eqsg3a"),
}

_PROJECTS = """query projects($workspaceId: String, $first: Int, $after: String) {
  projects(workspaceId: $workspaceId, first: $first, after: $after) {
    edges { node { id name createdAt environments { edges { node { id name } } } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
_PROJECT_CREATE = """mutation projectCreate($input: ProjectCreateInput!) {
  projectCreate(input: $input) { id name createdAt environments { edges { node { id name } } } }
}"""
_PROJECT_CONTENTS = """query project($id: String!) {
  project(id: $id) {
    services { edges { node { id name } } }
    volumes { edges { node { id name volumeInstances { edges { node {
      id environmentId serviceId mountPath region sizeMB } } } } } }
  }
}"""
_SERVICE_CREATE = """mutation serviceCreate($input: ServiceCreateInput!) { serviceCreate(input: $input) { id name } }"""
_SERVICE_INSTANCE = """query serviceInstance($serviceId: String!, $environmentId: String!) {
  serviceInstance(serviceId: $serviceId, environmentId: $environmentId) {
    serviceName region source { image } latestDeployment { id status deploymentStopped }
  }
}"""
_SERVICE_INSTANCE_UPDATE = """mutation serviceInstanceUpdate($serviceId: String!, $environmentId: String!,
    $input: ServiceInstanceUpdateInput!) {
  serviceInstanceUpdate(serviceId: $serviceId, environmentId: $environmentId, input: $input)
}"""
_LIMITS_UPDATE = """mutation serviceInstanceLimitsUpdate($input: ServiceInstanceLimitsUpdateInput!) {
  serviceInstanceLimitsUpdate(input: $input)
}"""
_DEPLOY = """mutation serviceInstanceDeployV2($serviceId: String!, $environmentId: String!) {
  serviceInstanceDeployV2(serviceId: $serviceId, environmentId: $environmentId)
}"""
_DOMAINS = """query domains($projectId: String!, $environmentId: String!, $serviceId: String!) {
  domains(projectId: $projectId, environmentId: $environmentId, serviceId: $serviceId) { serviceDomains { id domain } }
}"""
_DOMAIN_CREATE = """mutation serviceDomainCreate($input: ServiceDomainCreateInput!) {
  serviceDomainCreate(input: $input) { id domain }
}"""
_VOLUME_CREATE = """mutation volumeCreate($input: VolumeCreateInput!) { volumeCreate(input: $input) { id name } }"""
_VOLUME_UPDATE = """mutation volumeUpdate($volumeId: String!, $input: VolumeUpdateInput!) {
  volumeUpdate(volumeId: $volumeId, input: $input) { id name }
}"""
_VOLUME_INSTANCE_UPDATE = """mutation volumeInstanceUpdate($volumeId: String!, $environmentId: String,
    $input: VolumeInstanceUpdateInput!) {
  volumeInstanceUpdate(volumeId: $volumeId, environmentId: $environmentId, input: $input)
}"""
_VARIABLES_UPSERT = """mutation variableCollectionUpsert($input: VariableCollectionUpsertInput!) {
  variableCollectionUpsert(input: $input)
}"""
_VARIABLES = """query variables($projectId: String!, $environmentId: String!, $serviceId: String) {
  variables(projectId: $projectId, environmentId: $environmentId, serviceId: $serviceId)
}"""
_BY_ID = {
    "projectDelete": "mutation projectDelete($id: String!) { projectDelete(id: $id) }",
    "serviceDelete": "mutation serviceDelete($id: String!) { serviceDelete(id: $id) }",
    "serviceDomainDelete": "mutation serviceDomainDelete($id: String!) { serviceDomainDelete(id: $id) }",
    "deploymentStop": "mutation deploymentStop($id: String!) { deploymentStop(id: $id) }",
    "deploymentRestart": "mutation deploymentRestart($id: String!) { deploymentRestart(id: $id) }",
}
_VOLUME_DELETE = "mutation volumeDelete($volumeId: String!) { volumeDelete(volumeId: $volumeId) }"
_CUSTOM_DOMAINS = """query domains($projectId: String!, $environmentId: String!, $serviceId: String!) {
  domains(projectId: $projectId, environmentId: $environmentId, serviceId: $serviceId) {
    customDomains { id domain status { certificateStatus } }
  }
}"""
_CUSTOM_DOMAIN_CREATE = """mutation customDomainCreate($input: CustomDomainCreateInput!) {
  customDomainCreate(input: $input) { id domain status { certificateStatus } }
}"""
_CUSTOM_DOMAIN_DELETE = "mutation customDomainDelete($id: String!) { customDomainDelete(id: $id) }"


class _Gone(Exception):
    """Railway answered "... not found": the thing (or its project) no longer exists."""


class RailwayProvisioner:
    provider = PROVIDER

    def __init__(self, *, api_url: str = DEFAULT_API_URL, token: str, workspace_id: str,
                 service_name: str = "agent-host", mount_path: str = "/data", target_port: int = 3888,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None, retries: int = 2,
                 backoff_s: float = 0.2, poll_s: float = 1.0):
        if not token:
            raise ValidationFailed("Railway is not configured: no API token", code="COMPUTE_NOT_CONFIGURED")
        if not workspace_id:
            raise ValidationFailed("Railway is not configured: no workspace id (RELAY_RAILWAY_WORKSPACE_ID)",
                                   code="COMPUTE_NOT_CONFIGURED")
        self.org = workspace_id
        self.service_name, self.mount_path, self.target_port = service_name, mount_path, target_port
        self._token = token
        self._retries, self._backoff_s, self._poll_s = retries, backoff_s, poll_s
        self._url = api_url
        # app name -> (project id, environment id): stable for the project's life, forgotten on delete_app.
        self._projects: dict[str, tuple[str, str]] = {}
        self._http = httpx.Client(
            timeout=timeout, transport=transport, follow_redirects=False,
            headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, "Accept": "application/json",
                     "Content-Type": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    # -- project (the "app") ---------------------------------------------------------------------

    def ensure_app(self, app_name: str, org: str | None = None) -> AppRef:
        workspace = org or self.org
        if self._lookup(app_name, workspace) is not None:
            return AppRef(name=app_name, org=workspace, created=False)
        created = self._gql("create the project", _PROJECT_CREATE, {"input": {
            "name": app_name, "workspaceId": workspace, "description": "Agent Relay workspace",
            "defaultEnvironmentName": ENVIRONMENT}})["projectCreate"]
        # Two racing attempts may both have created one: the oldest is the workspace's, ours goes.
        oldest = self._lookup(app_name, workspace, fresh=True)
        if oldest is not None and oldest[0] != created.get("id"):
            self._delete_project(str(created.get("id")))
            return AppRef(name=app_name, org=workspace, created=False)
        return AppRef(name=app_name, org=workspace, created=True)

    def delete_app(self, app_name: str) -> None:
        self._projects.pop(app_name, None)
        for project in self._projects_named(app_name, self.org):  # every attempt's, should a race have left two
            self._delete_project(project["id"])
        self._projects.pop(app_name, None)

    def _delete_project(self, project_id: str) -> None:
        try:
            self._gql("delete the project", _BY_ID["projectDelete"], {"id": project_id}, retry=True, gone_ok=True)
        except _Gone:
            pass

    def _projects_named(self, app_name: str, workspace: str) -> list[dict]:
        found, after = [], None
        while True:  # Railway pages connections; a workspace holds one project per Relay workspace
            page = self._gql("list projects", _PROJECTS, {"workspaceId": workspace, "first": 100, "after": after},
                             retry=True)["projects"]
            found += [edge["node"] for edge in page.get("edges") or [] if edge["node"].get("name") == app_name]
            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return sorted(found, key=lambda p: str(p.get("createdAt", "")))
            after = info["endCursor"]

    def _lookup(self, app_name: str, workspace: str | None = None, *, fresh: bool = False) -> tuple[str, str] | None:
        """(project id, environment id) of the app's project, or None when there is none."""
        if not fresh and app_name in self._projects:
            return self._projects[app_name]
        projects = self._projects_named(app_name, workspace or self.org)
        if not projects:
            self._projects.pop(app_name, None)
            return None
        environments = [e["node"] for e in (projects[0].get("environments") or {}).get("edges") or []]
        environment = next((e for e in environments if e.get("name") == ENVIRONMENT), environments[0] if environments
                           else None)
        if environment is None:
            raise ProviderRejected(f"The Railway project {app_name} has no environment", provider=PROVIDER,
                                   upstream_status=200, upstream_error="no environment")
        self._projects[app_name] = (str(projects[0]["id"]), str(environment["id"]))
        return self._projects[app_name]

    def _require(self, app_name: str) -> tuple[str, str]:
        ids = self._lookup(app_name)
        if ids is None:
            raise ProviderRejected(f"The Railway project {app_name} does not exist", provider=PROVIDER,
                                   upstream_status=404, upstream_error="Project not found")
        return ids

    # -- the service -----------------------------------------------------------------------------

    def _contents(self, project_id: str) -> dict:
        try:
            return self._gql("read the project", _PROJECT_CONTENTS, {"id": project_id}, retry=True,
                             gone_ok=True)["project"]
        except _Gone as gone:  # deleted behind this process's back: forget it, the next step looks again
            self._projects = {app: ids for app, ids in self._projects.items() if ids[0] != project_id}
            raise ProviderRejected("The Railway project no longer exists", provider=PROVIDER, upstream_status=404,
                                   upstream_error=str(gone)) from None

    def _find_service(self, project_id: str, name: str) -> dict | None:
        services = [e["node"] for e in (self._contents(project_id).get("services") or {}).get("edges") or []]
        return next((s for s in services if s.get("name") == name), None)

    def _ensure_service(self, app_name: str, name: str | None = None) -> tuple[str, str, str]:
        """(project id, environment id, service id); the service is created empty when missing."""
        name = name or self.service_name
        project_id, environment_id = self._require(app_name)
        service = self._find_service(project_id, name)
        if service is None:
            try:
                service = self._gql("create the service", _SERVICE_CREATE, {"input": {
                    "projectId": project_id, "name": name, "environmentId": environment_id}})["serviceCreate"]
            except ProviderRejected:
                service = self._find_service(project_id, name)  # a racing or lost-answer attempt made it
                if service is None:
                    raise
        return project_id, environment_id, str(service["id"])

    # -- domain (Railway's answer to IP addresses) -----------------------------------------------

    def ensure_ips(self, app_name: str) -> list[IpRef]:
        """The service's Railway domain, created once. Railway has no IP addresses to allocate: the
        workspace is reached (and a custom domain CNAMEd) through this host name."""
        project_id, environment_id, service_id = self._ensure_service(app_name)
        domains = self._service_domains(project_id, environment_id, service_id)
        if not domains:
            created = self._gql("create the service domain", _DOMAIN_CREATE, {"input": {
                "serviceId": service_id, "environmentId": environment_id,
                "targetPort": self.target_port}})["serviceDomainCreate"]
            domains = [created]
        return [IpRef(address=str(d.get("domain", "")), type="domain") for d in domains]

    def _service_domains(self, project_id: str, environment_id: str, service_id: str) -> list[dict]:
        answer = self._gql("list the service domains", _DOMAINS, {
            "projectId": project_id, "environmentId": environment_id, "serviceId": service_id}, retry=True)
        return list((answer["domains"] or {}).get("serviceDomains") or [])

    def release_ips(self, app_name: str) -> None:
        ids = self._lookup(app_name, fresh=True)
        if ids is None:
            return
        service = self._find_service(ids[0], self.service_name)
        if service is None:
            return
        domains = self._service_domains(ids[0], ids[1], str(service["id"]))
        for domain in domains:
            try:
                self._gql("delete the service domain", _BY_ID["serviceDomainDelete"], {"id": domain["id"]},
                          retry=True, gone_ok=True)
            except _Gone:
                pass

    # -- volume ----------------------------------------------------------------------------------

    def ensure_volume(self, app_name: str, name: str, region: str, size_gb: int) -> VolumeRef:
        """The service's volume (one per service on Railway). Railway sizes volumes by plan, not by
        request: ``size_gb`` is reported back from what Railway gives, not sent."""
        project_id, environment_id, service_id = self._ensure_service(app_name)
        volume = self._find_volume(project_id, environment_id, service_id, name)
        if volume is None:
            created = self._gql("create the volume", _VOLUME_CREATE, {"input": {
                "projectId": project_id, "environmentId": environment_id, "serviceId": service_id,
                "mountPath": self.mount_path, "region": railway_region(region)}})["volumeCreate"]
            volume = {"id": created["id"], "name": created.get("name"), "instance": {
                "serviceId": service_id, "region": railway_region(region), "sizeMB": 0}}
        if volume["name"] != name:  # Railway names a new volume itself; ours carries the step's name
            self._gql("name the volume", _VOLUME_UPDATE, {"volumeId": volume["id"], "input": {"name": name}},
                      retry=True)
            volume = {**volume, "name": name}
            if not volume["instance"].get("sizeMB"):
                volume = self._find_volume(project_id, environment_id, service_id, name) or volume
        instance = volume["instance"]
        return VolumeRef(id=str(volume["id"]), name=name, region=str(instance.get("region") or ""),
                         size_gb=int(instance.get("sizeMB") or 0) // 1000,
                         attached_machine_id=instance.get("serviceId"))

    def _find_volume(self, project_id: str, environment_id: str, service_id: str, name: str) -> dict | None:
        """Ours: the one of this name, else the one attached to our service (a create whose answer was
        lost, still carrying Railway's own name)."""
        candidates = []
        for edge in (self._contents(project_id).get("volumes") or {}).get("edges") or []:
            volume = edge["node"]
            instance = next((i["node"] for i in (volume.get("volumeInstances") or {}).get("edges") or []
                             if i["node"].get("environmentId") == environment_id), None)
            if instance is None:
                continue
            if volume.get("name") == name:
                return {"id": volume["id"], "name": name, "instance": instance}
            if instance.get("serviceId") == service_id:
                candidates.append({"id": volume["id"], "name": volume.get("name"), "instance": instance})
        return candidates[0] if candidates else None

    def delete_volume(self, app_name: str, volume_id: str) -> None:
        if self._lookup(app_name, fresh=True) is None:
            return  # the project (and everything in it) is gone
        try:
            self._gql("delete the volume", _VOLUME_DELETE, {"volumeId": volume_id}, retry=True, gone_ok=True)
        except _Gone:
            pass

    # -- secrets (service variables) -------------------------------------------------------------

    def set_secrets(self, app_name: str, values: dict[str, str]) -> int:
        """One bulk upsert of service variables; the same values again change nothing, so it is
        retried like a read. Railway keeps no secrets version: returns the number of variables set."""
        if not values:
            return 0
        project_id, environment_id, service_id = self._ensure_service(app_name)
        self._upsert_variables(project_id, environment_id, service_id, values)
        return len(values)

    def _upsert_variables(self, project_id: str, environment_id: str, service_id: str, values: dict) -> None:
        self._gql("set the variables", _VARIABLES_UPSERT, {"input": {
            "projectId": project_id, "environmentId": environment_id, "serviceId": service_id,
            "variables": dict(values), "skipDeploys": True}}, retry=True)

    def secret_names(self, app_name: str) -> list[str]:
        project_id, environment_id = self._require(app_name)
        service = self._find_service(project_id, self.service_name)
        if service is None:
            return []
        answer = self._gql("list the variables", _VARIABLES, {
            "projectId": project_id, "environmentId": environment_id, "serviceId": service["id"]}, retry=True)
        return sorted(answer["variables"] or {})

    # -- the "machine": the service's deployment ---------------------------------------------------

    def ensure_machine(self, app_name: str, name: str, spec: MachineSpec) -> MachineRef:
        if not spec.image:
            raise ValidationFailed("No workspace image is configured (RELAY_WORKSPACE_IMAGE)",
                                   code="COMPUTE_NOT_CONFIGURED")
        if name != self.service_name:
            # Domains, the volume and variables were made on the service of this name by earlier steps.
            raise ValidationFailed(f"The Railway workspace service is named {self.service_name!r}, not {name!r}",
                                   code="COMPUTE_NOT_CONFIGURED")
        project_id, environment_id, service_id = self._ensure_service(app_name, name)
        try:
            instance = self._service_instance(service_id, environment_id)
        except _Gone:
            raise _gone_machine() from None
        latest = instance.get("latestDeployment")
        if latest is None:
            self._configure(project_id, environment_id, service_id, spec)
            deployment_id = self._gql("deploy the service", _DEPLOY,
                                      {"serviceId": service_id, "environmentId": environment_id})
            latest = {"id": deployment_id.get("serviceInstanceDeployV2"), "status": "INITIALIZING"}
        volume = self._find_volume(project_id, environment_id, service_id, "")
        return MachineRef(id=service_id, name=name, state=_state(latest), region=railway_region(spec.region),
                          instance_id=str(latest.get("id") or ""), volume_id=volume["id"] if volume else None)

    def _configure(self, project_id: str, environment_id: str, service_id: str, spec: MachineSpec) -> None:
        """Image, region, health check and restart policy, resource limits and plain environment; every
        call is an update of the same values, so each is safe to repeat."""
        self._gql("configure the service", _SERVICE_INSTANCE_UPDATE, {
            "serviceId": service_id, "environmentId": environment_id, "input": {
                "source": {"image": spec.image},
                "multiRegionConfig": {railway_region(spec.region): {"numReplicas": 1}},
                "healthcheckPath": "/health", "healthcheckTimeout": 300,
                "restartPolicyType": "ON_FAILURE", "restartPolicyMaxRetries": 5,
                # Start and stop are ours (lifecycle and usage metering): Railway must not sleep it.
                "sleepApplication": False,
            }}, retry=True)
        self._gql("set the service's limits", _LIMITS_UPDATE, {"input": {
            "serviceId": service_id, "environmentId": environment_id,
            "vCPUs": spec.size.cpus, "memoryGB": spec.size.memory_mb / 1024}}, retry=True)
        env = {**spec.env, "PORT": str(spec.internal_port)}  # Railway routes the domain to $PORT
        self._upsert_variables(project_id, environment_id, service_id, env)
        if self.mount_path != spec.mount_path:
            volume = self._find_volume(project_id, environment_id, service_id, "")
            if volume is not None:
                self._gql("mount the volume", _VOLUME_INSTANCE_UPDATE, {
                    "volumeId": volume["id"], "environmentId": environment_id,
                    "input": {"mountPath": spec.mount_path}}, retry=True)

    def _service_instance(self, service_id: str, environment_id: str) -> dict:
        return self._gql("read the service", _SERVICE_INSTANCE,
                         {"serviceId": service_id, "environmentId": environment_id}, retry=True,
                         gone_ok=True)["serviceInstance"]

    def _latest(self, app_name: str, machine_id: str) -> dict | None:
        """The latest deployment ({} when never deployed), or None when the service or project is gone."""
        ids = self._lookup(app_name)
        if ids is None:
            return None
        try:
            instance = self._service_instance(machine_id, ids[1])
        except _Gone:
            return None
        return instance.get("latestDeployment") or {}

    def machine_state(self, app_name: str, machine_id: str) -> str | None:
        latest = self._latest(app_name, machine_id)
        return None if latest is None else _state(latest)

    def wait_started(self, app_name: str, machine_id: str, timeout_s: int = MAX_WAIT_S) -> bool:
        """Poll the latest deployment (Railway has no blocking wait) until it runs: True, or False at the
        deadline. A failed or crashed deployment will not start by waiting: that is refused at once."""
        deadline = time.monotonic() + max(1, min(MAX_WAIT_S, int(timeout_s)))
        while True:
            latest = self._latest(app_name, machine_id)
            if latest is None:
                raise _gone_machine()
            state = _state(latest)
            if state == "started":
                return True
            if state == "failed":
                raise ProviderRejected(f"The Railway deployment ended {latest.get('status')}", provider=PROVIDER,
                                       upstream_status=200, upstream_error=str(latest.get("status")))
            if time.monotonic() + self._poll_s > deadline:
                return False
            time.sleep(self._poll_s)

    def start(self, app_name: str, machine_id: str) -> str:
        state = self._state_or_reject(app_name, machine_id)
        if state in ("started", "starting"):
            return state
        if state == "stopping":  # let the stop settle so the new deployment is not replaced by it
            deadline = time.monotonic() + 30
            while state == "stopping" and time.monotonic() < deadline:
                time.sleep(self._poll_s)
                state = self._state_or_reject(app_name, machine_id)
        _, environment_id = self._require(app_name)
        self._gql("start the service", _DEPLOY, {"serviceId": machine_id, "environmentId": environment_id})
        return self._state_or_reject(app_name, machine_id)

    def stop(self, app_name: str, machine_id: str) -> str:
        latest = self._latest(app_name, machine_id)
        if latest is None:
            raise _gone_machine()
        state = _state(latest)
        if state in ("stopped", "stopping", "created", "suspended"):
            return state
        return self._on_deployment(app_name, machine_id, "deploymentStop", latest["id"], done=("stopping", "stopped"))

    def restart(self, app_name: str, machine_id: str) -> str:
        latest = self._latest(app_name, machine_id)
        if latest is None:
            raise _gone_machine()
        state = _state(latest)
        if state in ("stopped", "created", "suspended", "stopping", "failed"):
            return self.start(app_name, machine_id)
        if state == "starting":
            return state
        return self._on_deployment(app_name, machine_id, "deploymentRestart", latest["id"],
                                   done=("starting", "started"))

    def _on_deployment(self, app_name: str, machine_id: str, mutation: str, deployment_id: str, *,
                       done: tuple[str, ...]) -> str:
        try:
            self._gql(mutation, _BY_ID[mutation], {"id": deployment_id})
        except ProviderRejected:
            # Refused because it already moved (a concurrent or earlier attempt): fine if it is where we want.
            if self._state_or_reject(app_name, machine_id) not in done:
                raise
        return self._state_or_reject(app_name, machine_id)

    def _state_or_reject(self, app_name: str, machine_id: str) -> str:
        state = self.machine_state(app_name, machine_id)
        if state is None:
            raise _gone_machine()
        return state

    def delete_machine(self, app_name: str, machine_id: str) -> None:
        """Deletes the service: its deployments, domain and variables go with it (Railway scopes them to
        the service); its volume stays until ``delete_volume``."""
        if self._lookup(app_name, fresh=True) is None:
            return
        try:
            self._gql("delete the service", _BY_ID["serviceDelete"], {"id": machine_id}, retry=True, gone_ok=True)
        except _Gone:
            pass

    # -- custom domains (the certificate comes with the domain on Railway) ------------------------

    def add_certificate(self, app_name: str, hostname: str) -> str:
        """Attach ``hostname`` to the service (Railway then issues its certificate); answers the status.
        Looks first, so a repeated verify never adds it twice."""
        status = self.certificate_status(app_name, hostname)
        if status is not None:
            return status
        project_id, environment_id, service_id = self._ensure_service(app_name)
        try:
            created = self._gql("add the custom domain", _CUSTOM_DOMAIN_CREATE, {"input": {
                "projectId": project_id, "environmentId": environment_id, "serviceId": service_id,
                "domain": hostname, "targetPort": self.target_port}})["customDomainCreate"]
        except ProviderRejected:
            status = self.certificate_status(app_name, hostname)  # an earlier attempt may have added it
            if status is not None:
                return status
            raise
        return _certificate_status(created)

    def certificate_status(self, app_name: str, hostname: str) -> str | None:
        """``pending`` | ``active`` | ``failed``, or None when the service has no such custom domain."""
        domain = self._custom_domain(app_name, hostname)
        return _certificate_status(domain) if domain else None

    def delete_certificate(self, app_name: str, hostname: str) -> None:
        domain = self._custom_domain(app_name, hostname)
        if domain is None:
            return
        try:
            self._gql("delete the custom domain", _CUSTOM_DOMAIN_DELETE, {"id": domain["id"]}, retry=True,
                      gone_ok=True)
        except _Gone:
            pass

    def _custom_domain(self, app_name: str, hostname: str) -> dict | None:
        ids = self._lookup(app_name)
        if ids is None:
            return None
        service = self._find_service(ids[0], self.service_name)
        if service is None:
            return None
        answer = self._gql("list the custom domains", _CUSTOM_DOMAINS, {
            "projectId": ids[0], "environmentId": ids[1], "serviceId": service["id"]}, retry=True)
        wanted = hostname.strip().lower().rstrip(".")
        return next((d for d in (answer["domains"] or {}).get("customDomains") or []
                     if str(d.get("domain", "")).lower() == wanted), None)

    # -- transport -------------------------------------------------------------------------------

    def _gql(self, action: str, query: str, variables: dict, *, retry: bool = False, gone_ok: bool = False) -> dict:
        """``data`` of one operation. ``gone_ok``: a "not found" answer raises ``_Gone`` for the caller
        to treat as done; any other GraphQL error is ``ProviderRejected``."""
        operation = query.split("(", 1)[0].split()[-1]
        attempts = self._retries + 1 if retry else 1
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                response = self._http.post(self._url, json={"query": query, "variables": variables,
                                                            "operationName": operation})
            except httpx.HTTPError as exc:
                response = None
                logger.warning(json_line(msg="railway call failed", operation=operation, error=type(exc).__name__))
            else:
                logger.info(json_line(msg="railway call", operation=operation, status=response.status_code,
                                      ms=round((time.monotonic() - started) * 1000)))
                if response.status_code not in RETRYABLE_STATUS and response.status_code < 500:
                    break
            if attempt + 1 < attempts:
                time.sleep(self._backoff_s * (2**attempt))
        else:
            raise UpstreamUnavailable(PROVIDER)
        body = _json(response)
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        if response.status_code >= 400 or errors:
            message = self._redact(str((errors[0] if errors else {}).get("message") or f"HTTP {response.status_code}"))
            if gone_ok and errors and all(_NOT_FOUND.search(str(e.get("message", ""))) for e in errors):
                raise _Gone(message)
            raise ProviderRejected(f"Railway refused to {action}: {message}", provider=PROVIDER,
                                   upstream_status=response.status_code, upstream_error=message)
        data = body.get("data")
        if not isinstance(data, dict):
            raise UpstreamUnavailable(PROVIDER)  # a 200 without data: Railway's answer was cut short
        return data

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "[redacted]")[:200]


def railway_region(region: str) -> str:
    """A Railway region for a Fly-style code (``iad``), or the value itself when it already is one."""
    return REGIONS.get(region, region) if region else REGIONS["iad"]


def _state(deployment: dict) -> str:
    if not deployment:
        return "created"  # the service exists but was never deployed
    if deployment.get("deploymentStopped") and deployment.get("status") not in ("REMOVING", "REMOVED"):
        return "stopping"
    return STATES.get(str(deployment.get("status")), "starting")


def _certificate_status(domain: dict) -> str:
    """Railway's certificate status (``ISSUED`` in its guide, ``CERTIFICATE_STATUS_TYPE_VALID`` in the
    schema's enum) read as pending | active | failed."""
    status = str((domain.get("status") or {}).get("certificateStatus") or "").upper()
    if "VALID" in status or "ISSUED" in status:
        return "active"
    return "failed" if "FAIL" in status else "pending"


def _gone_machine() -> ProviderRejected:
    return ProviderRejected("The workspace service no longer exists on Railway", provider=PROVIDER,
                            upstream_status=404, upstream_error="Service not found")


def json_line(**fields) -> str:
    return json.dumps(fields, separators=(",", ":"))


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
