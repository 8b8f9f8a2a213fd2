"""A Railway fake: the public GraphQL API (``POST /graphql/v2``, as at backboard.railway.com/graphql/v2).

Operation names, arguments and input fields follow Railway's API documentation (docs.railway.com,
integrations/api/manage-*) and the GraphQL documents of its CLI (railwayapp/cli ``src/gql``). Where the
documentation is silent (error wording, what a stop does to a deployment's status) the choices are the
sandbox's own and written down in docs/design/compute-provisioning.md ("Railway").

    Projects      projects(workspaceId, first, after), project(id), projectCreate(input), projectDelete(id)
    Environments  environments(projectId), environment(id) (a new project gets ``production``)
    Services      service(id), serviceCreate(input), serviceDelete(id), serviceInstance(serviceId, environmentId),
                  serviceInstanceUpdate(serviceId, environmentId, input), serviceInstanceLimitsUpdate(input)
    Deployments   serviceInstanceDeployV2 / serviceInstanceDeploy / serviceInstanceRedeploy, deployments(input,
                  first), deployment(id), deploymentRedeploy / deploymentRestart / deploymentStop /
                  deploymentRemove(id)
    Volumes       volumeCreate(input), volumeUpdate(volumeId, input), volumeInstanceUpdate(volumeId, input),
                  volumeDelete(volumeId), volumeInstance(id), project(id) { volumes }
    Variables     variables(projectId, environmentId, serviceId), variableUpsert / variableCollectionUpsert /
                  variableDelete(input): values are reduced to digests on arrival
    Domains       domains(projectId, environmentId, serviceId), serviceDomainCreate(input), serviceDomainDelete(id),
                  customDomainCreate(input), customDomain(id, projectId), customDomainDelete(id)

Every request needs ``Authorization: Bearer <token>`` (or ``Team-Access-Token: <token>``) of a token
registered for one workspace (``register_token``); otherwise HTTP 401 with Railway's error body. A
resolver's refusal is HTTP 200 ``{"data": null, "errors": [{"message", "path", "extensions": {"code"}}]}``;
a malformed document is HTTP 400. An id that exists in another workspace answers "Not Authorized", an
unknown id "<Type> not found".

Deployment statuses move with the (injectable) clock: INITIALIZING → DEPLOYING → SUCCESS (a previous
active deployment of the service then becomes REMOVED); a stop: REMOVING → REMOVED
(``deploymentStopped``); an image whose tag is ``crash`` ends CRASHED instead of SUCCESS.

Sandbox control surface (SPEC §5; never faulted):
    GET  /_inventory      projects, environments, services, volumes, deployments, domains, variable names, counts
    POST /_faults         the shared fault injection ({"path_contains", "status", "count", "delay_ms"})
    GET|POST /_config     {"initializing_ms", "deploy_ms", "stop_ms", "certificate_ms", "volume_size_mb"}
    POST /_reset          forget every project
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from relay_cloud.sandbox.base import Request, Response, Sandbox, json_response, update_settings

# The GraphQL reader is the Fly sandbox's: one operation, variables, arguments, aliases, nested selections.
from relay_cloud.sandbox.fly import _GraphQLError, _parse_operation, _value

REGIONS = ("us-west2", "us-east4-eqdc4a", "europe-west4-drams3a", "asia-southeast1-eqsg3a")
DEFAULT_REGION = "us-east4-eqdc4a"
ACTIVE = ("INITIALIZING", "BUILDING", "DEPLOYING", "SUCCESS", "SLEEPING", "CRASHED")
IN_PROGRESS = ("QUEUED", "WAITING", "INITIALIZING", "BUILDING", "DEPLOYING")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
NOT_AUTHORIZED = "Not Authorized"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _id() -> str:
    return str(uuid.uuid4())


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _connection(nodes: list) -> dict:
    return {"edges": [{"node": node, "cursor": str(i)} for i, node in enumerate(nodes)],
            "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None}}


class _Refused(_GraphQLError):
    """A resolver's refusal: HTTP 200 with ``errors`` (Railway answers its business errors this way)."""

    def __init__(self, message: str, code: str = "INTERNAL_SERVER_ERROR") -> None:
        super().__init__(message, code)


@dataclass
class Environment:
    id: str
    name: str
    created_at: float


@dataclass
class ServiceInstance:
    environment_id: str
    image: str | None = None
    region: str = DEFAULT_REGION
    vcpus: float | None = None
    memory_gb: float | None = None
    healthcheck_path: str | None = None
    restart_policy_type: str = "ON_FAILURE"
    restart_policy_max_retries: int = 10
    sleep_application: bool = False
    num_replicas: int = 1


@dataclass
class Service:
    id: str
    name: str
    created_at: float
    instances: dict[str, ServiceInstance] = field(default_factory=dict)  # environment id -> instance


@dataclass
class VolumeInstance:
    id: str
    environment_id: str
    service_id: str | None
    mount_path: str
    region: str
    size_mb: int
    created_at: float


@dataclass
class Volume:
    id: str
    name: str
    created_at: float
    instances: dict[str, VolumeInstance] = field(default_factory=dict)  # environment id -> instance


@dataclass
class Deployment:
    id: str
    service_id: str
    environment_id: str
    image: str
    created_at: float
    status: str
    updated_at: float
    stopped: bool = False
    pending: list[tuple[float, str]] = field(default_factory=list)  # (when, next status), in order
    restarts: int = 0


@dataclass
class ServiceDomain:
    id: str
    domain: str
    service_id: str
    environment_id: str
    target_port: int | None
    created_at: float


@dataclass
class CustomDomain:
    id: str
    domain: str
    service_id: str
    environment_id: str
    target_port: int | None
    created_at: float


@dataclass
class Project:
    id: str
    name: str
    workspace_id: str
    description: str
    created_at: float
    environments: dict[str, Environment] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    service_domains: dict[str, ServiceDomain] = field(default_factory=dict)
    custom_domains: dict[str, CustomDomain] = field(default_factory=dict)
    # (environment id, service id or None for shared) -> {name: {"digest", "updated_at"}}
    variables: dict[tuple[str, str | None], dict[str, dict]] = field(default_factory=dict)


class RailwaySandbox(Sandbox):
    name = "railway"

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 dns_configured: Callable[[str, str], bool] | None = None) -> None:
        super().__init__()
        self.clock = clock
        # Whether ``hostname`` points at ``service_domain`` (the local stack can ask the DNS sandbox).
        self.dns_configured = dns_configured or (lambda _hostname, _target: True)
        self._lock = threading.RLock()
        self._tokens: dict[str, str] = {}  # token -> workspace id
        self._projects: dict[str, Project] = {}
        self.settings = {"initializing_ms": 100, "deploy_ms": 500, "stop_ms": 250, "certificate_ms": 1000,
                         "volume_size_mb": 5000}
        self.requests = 0  # API calls seen (the benchmark counts upstream calls per provision)

        self.route("GET", "/_inventory", self.inventory, control=True)
        self.route("GET", "/_config", self.get_config, control=True)
        self.route("POST", "/_config", self.set_config, control=True)
        self.route("POST", "/_reset", self.reset, control=True)
        self.route("POST", "/graphql/v2", self.graphql)

        self._queries = {
            "projects": self._q_projects, "project": self._q_project, "environments": self._q_environments,
            "environment": self._q_environment, "service": self._q_service,
            "serviceInstance": self._q_service_instance, "deployments": self._q_deployments,
            "deployment": self._q_deployment, "variables": self._q_variables, "domains": self._q_domains,
            "customDomain": self._q_custom_domain, "volumeInstance": self._q_volume_instance,
        }
        self._mutations = {
            "projectCreate": self._m_project_create, "projectDelete": self._m_project_delete,
            "serviceCreate": self._m_service_create, "serviceDelete": self._m_service_delete,
            "serviceInstanceUpdate": self._m_service_instance_update,
            "serviceInstanceLimitsUpdate": self._m_limits_update,
            "serviceInstanceDeployV2": self._m_deploy_v2, "serviceInstanceDeploy": self._m_deploy,
            "serviceInstanceRedeploy": self._m_deploy,
            "deploymentRedeploy": self._m_deployment_redeploy, "deploymentRestart": self._m_deployment_restart,
            "deploymentStop": self._m_deployment_stop, "deploymentRemove": self._m_deployment_remove,
            "volumeCreate": self._m_volume_create, "volumeUpdate": self._m_volume_update,
            "volumeInstanceUpdate": self._m_volume_instance_update, "volumeDelete": self._m_volume_delete,
            "variableUpsert": self._m_variable_upsert, "variableCollectionUpsert": self._m_variable_collection_upsert,
            "variableDelete": self._m_variable_delete,
            "serviceDomainCreate": self._m_service_domain_create, "serviceDomainDelete": self._m_service_domain_delete,
            "customDomainCreate": self._m_custom_domain_create, "customDomainDelete": self._m_custom_domain_delete,
        }

    # -- tokens and the GraphQL endpoint ---------------------------------------------------------

    def register_token(self, token: str, workspace_id: str) -> None:
        """A workspace token: it sees and manages that workspace's projects."""
        with self._lock:
            self._tokens[token] = workspace_id

    def _workspace_of(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else request.headers.get("team-access-token", "").strip()
        with self._lock:
            return self._tokens.get(token) if token else None

    def graphql(self, request: Request) -> Response:
        with self._lock:
            self.requests += 1
        workspace = self._workspace_of(request)
        if workspace is None:
            return json_response({"data": None, "errors": [{"message": NOT_AUTHORIZED,
                                                            "extensions": {"code": "UNAUTHENTICATED"}}]}, 401)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return json_response({"errors": [{"message": "Must provide query string."}]}, 400)
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return json_response({"errors": [{"message": "Variables must be an object."}]}, 400)
        try:
            kind, selections = _parse_operation(body["query"], body.get("operationName"))
            resolvers = self._mutations if kind == "mutation" else self._queries
            for sel in selections:
                if sel.name != "__typename" and sel.name not in resolvers:
                    raise _GraphQLError(f'Cannot query field "{sel.name}" on type '
                                        f'"{"Mutation" if kind == "mutation" else "Query"}".',
                                        "GRAPHQL_VALIDATION_FAILED")
        except _GraphQLError as exc:
            return json_response({"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]}, 400)
        data: dict = {}
        errors = []
        with self._lock:
            for sel in selections:
                if sel.name == "__typename":
                    data[sel.alias] = "Mutation" if kind == "mutation" else "Query"
                    continue
                args = {k: _value(v, variables) for k, v in sel.args.items()}
                try:
                    data[sel.alias] = _select(resolvers[sel.name](args, workspace), sel.children, variables)
                except _Refused as exc:
                    data[sel.alias] = None
                    errors.append({"message": exc.message, "locations": [{"line": 1, "column": 1}],
                                   "path": [sel.alias], "extensions": {"code": exc.code}})
                except _GraphQLError as exc:  # a field the type does not have: the document is invalid
                    return json_response({"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]},
                                         400)
        if errors:
            # Railway's root fields are non-null: one failed field nulls the whole ``data``.
            return json_response({"data": None, "errors": errors})
        return json_response({"data": data})

    # -- lookups (by id, scoped to the token's workspace) ------------------------------------------

    def _project(self, project_id, workspace: str) -> Project:
        project = self._projects.get(str(project_id or ""))
        if project is None:
            raise _Refused("Project not found", "NOT_FOUND")
        if project.workspace_id != workspace:
            raise _Refused(NOT_AUTHORIZED, "FORBIDDEN")
        self._advance_project(project)
        return project

    def _find(self, kind: str, object_id, workspace: str):
        """(project, object) for a service / volume / deployment / domain id anywhere."""
        object_id = str(object_id or "")
        for project in self._projects.values():
            found = getattr(project, kind).get(object_id)
            if found is not None:
                if project.workspace_id != workspace:
                    raise _Refused(NOT_AUTHORIZED, "FORBIDDEN")
                self._advance_project(project)
                return project, found
        label = {"services": "Service", "volumes": "Volume", "deployments": "Deployment",
                 "service_domains": "Service domain", "custom_domains": "Custom domain"}[kind]
        raise _Refused(f"{label} not found", "NOT_FOUND")

    def _environment(self, project: Project, environment_id) -> Environment:
        environment = project.environments.get(str(environment_id or ""))
        if environment is None:
            raise _Refused("Environment not found", "NOT_FOUND")
        return environment

    def _instance(self, project: Project, service: Service, environment_id) -> ServiceInstance:
        self._environment(project, environment_id)
        instance = service.instances.get(environment_id)
        if instance is None:
            raise _Refused("ServiceInstance not found", "NOT_FOUND")
        return instance

    @staticmethod
    def _input(args: dict) -> dict:
        data = args.get("input")
        if not isinstance(data, dict):
            raise _Refused("input is required", "BAD_USER_INPUT")
        return data

    # -- deployments move with the clock --------------------------------------------------------

    def _advance_project(self, project: Project) -> None:
        now = self.clock()
        for deployment in sorted(project.deployments.values(), key=lambda d: d.created_at):
            while deployment.pending and deployment.pending[0][0] <= now:
                at, status = deployment.pending.pop(0)
                deployment.status, deployment.updated_at = status, at
                if status == "SUCCESS":  # the new deployment replaces the service's previous active one
                    for other in project.deployments.values():
                        if (other is not deployment and other.service_id == deployment.service_id
                                and other.environment_id == deployment.environment_id
                                and other.created_at <= deployment.created_at and other.status in ACTIVE):
                            other.status, other.pending, other.updated_at = "REMOVED", [], at

    def _schedule(self, deployment: Deployment, *steps: tuple[str, int]) -> None:
        """Move to the first status now and to each next one after the previous one's delay (ms)."""
        now = self.clock()
        deployment.pending.clear()
        first, delay = steps[0]
        deployment.status, deployment.updated_at = first, now
        at = now
        for status, next_delay in steps[1:]:
            at += delay / 1000
            deployment.pending.append((at, status))
            delay = next_delay

    def _start_deployment(self, project: Project, service: Service, environment_id: str) -> Deployment:
        instance = self._instance(project, service, environment_id)
        if not instance.image:
            raise _Refused("Service has no source to deploy: connect a repo or set an image", "BAD_USER_INPUT")
        deployment = Deployment(id=_id(), service_id=service.id, environment_id=environment_id, image=instance.image,
                                created_at=self.clock(), status="INITIALIZING", updated_at=self.clock())
        final = "CRASHED" if instance.image.rsplit(":", 1)[-1] == "crash" else "SUCCESS"
        self._schedule(deployment, ("INITIALIZING", self.settings["initializing_ms"]),
                       ("DEPLOYING", self.settings["deploy_ms"]), (final, 0))
        project.deployments[deployment.id] = deployment
        self._advance_project(project)
        return deployment

    def _latest(self, project: Project, service_id: str, environment_id: str) -> Deployment | None:
        candidates = [d for d in project.deployments.values()
                      if d.service_id == service_id and d.environment_id == environment_id]
        return max(candidates, key=lambda d: d.created_at) if candidates else None

    # -- views: dicts whose callables take the field's arguments -------------------------------

    def _project_view(self, project: Project) -> dict:
        return {
            "__typename": "Project", "id": project.id, "name": project.name, "description": project.description,
            "createdAt": _iso(project.created_at), "updatedAt": _iso(project.created_at),
            "workspaceId": project.workspace_id, "teamId": project.workspace_id, "isPublic": False, "prDeploys": False,
            "deletedAt": None,
            "baseEnvironmentId": next(iter(project.environments), None),
            "workspace": {"id": project.workspace_id, "name": project.workspace_id},
            "team": {"id": project.workspace_id, "name": project.workspace_id},
            "environments": lambda _a: _connection([self._environment_view(project, e)
                                                     for e in project.environments.values()]),
            "services": lambda _a: _connection([self._service_view(project, s) for s in project.services.values()]),
            "volumes": lambda _a: _connection([self._volume_view(project, v) for v in project.volumes.values()]),
        }

    def _environment_view(self, project: Project, environment: Environment) -> dict:
        return {
            "__typename": "Environment", "id": environment.id, "name": environment.name,
            "createdAt": _iso(environment.created_at), "projectId": project.id, "isEphemeral": False,
            "serviceInstances": lambda _a: _connection([
                self._instance_view(project, s, s.instances[environment.id])
                for s in project.services.values() if environment.id in s.instances]),
        }

    def _service_view(self, project: Project, service: Service) -> dict:
        return {
            "__typename": "Service", "id": service.id, "name": service.name, "icon": None,
            "createdAt": _iso(service.created_at), "updatedAt": _iso(service.created_at), "projectId": project.id,
            "serviceInstances": lambda _a: _connection([self._instance_view(project, service, i)
                                                         for i in service.instances.values()]),
            "deployments": lambda a: _connection([self._deployment_view(project, d) for d in sorted(
                (d for d in project.deployments.values() if d.service_id == service.id),
                key=lambda d: d.created_at, reverse=True)][: int(a.get("first") or 100)]),
        }

    def _instance_view(self, project: Project, service: Service, instance: ServiceInstance) -> dict:
        latest = self._latest(project, service.id, instance.environment_id)
        return {
            "__typename": "ServiceInstance", "id": f"{service.id}:{instance.environment_id}",
            "serviceId": service.id, "serviceName": service.name, "environmentId": instance.environment_id,
            "source": {"image": instance.image, "repo": None} if instance.image else None,
            "region": instance.region, "numReplicas": instance.num_replicas,
            "healthcheckPath": instance.healthcheck_path, "healthcheckTimeout": 300,
            "restartPolicyType": instance.restart_policy_type,
            "restartPolicyMaxRetries": instance.restart_policy_max_retries,
            "sleepApplication": instance.sleep_application, "startCommand": None, "buildCommand": None,
            "rootDirectory": None, "builder": "NIXPACKS", "cronSchedule": None,
            "latestDeployment": self._deployment_view(project, latest) if latest else None,
            "domains": lambda _a: self._domains_view(project, service.id, instance.environment_id),
        }

    def _deployment_view(self, project: Project, deployment: Deployment) -> dict:
        domain = next((d.domain for d in project.service_domains.values()
                       if d.service_id == deployment.service_id and d.environment_id == deployment.environment_id),
                      None)
        return {
            "__typename": "Deployment", "id": deployment.id, "status": deployment.status,
            "createdAt": _iso(deployment.created_at), "updatedAt": _iso(deployment.updated_at),
            "projectId": project.id, "serviceId": deployment.service_id, "environmentId": deployment.environment_id,
            "deploymentStopped": deployment.stopped, "staticUrl": domain, "url": f"https://{domain}" if domain else None,
            "canRedeploy": deployment.status in ("SUCCESS", "FAILED", "CRASHED", "REMOVED"),
            "canRollback": False, "meta": {"image": deployment.image, "restarts": deployment.restarts},
            "snapshotId": None, "suggestAddServiceDomain": domain is None,
        }

    def _volume_view(self, project: Project, volume: Volume) -> dict:
        return {
            "__typename": "Volume", "id": volume.id, "name": volume.name, "projectId": project.id,
            "createdAt": _iso(volume.created_at),
            "volumeInstances": lambda _a: _connection([self._volume_instance_view(volume, i)
                                                        for i in volume.instances.values()]),
        }

    def _volume_instance_view(self, volume: Volume, instance: VolumeInstance) -> dict:
        return {
            "__typename": "VolumeInstance", "id": instance.id, "volumeId": volume.id,
            "environmentId": instance.environment_id, "serviceId": instance.service_id,
            "mountPath": instance.mount_path, "region": instance.region, "sizeMB": instance.size_mb,
            "currentSizeMB": 0, "state": "READY", "createdAt": _iso(instance.created_at),
            "volume": {"id": volume.id, "name": volume.name},
        }

    def _domains_view(self, project: Project, service_id: str, environment_id: str) -> dict:
        return {
            "__typename": "AllDomains",
            "serviceDomains": [self._service_domain_view(d) for d in project.service_domains.values()
                               if d.service_id == service_id and d.environment_id == environment_id],
            "customDomains": [self._custom_domain_view(project, d) for d in project.custom_domains.values()
                              if d.service_id == service_id and d.environment_id == environment_id],
        }

    @staticmethod
    def _service_domain_view(domain: ServiceDomain) -> dict:
        return {"__typename": "ServiceDomain", "id": domain.id, "domain": domain.domain, "suffix": "up.railway.app",
                "serviceId": domain.service_id, "environmentId": domain.environment_id,
                "targetPort": domain.target_port, "createdAt": _iso(domain.created_at),
                "updatedAt": _iso(domain.created_at), "syncStatus": "ACTIVE"}

    def _custom_domain_view(self, project: Project, domain: CustomDomain) -> dict:
        target = next((d.domain for d in project.service_domains.values() if d.service_id == domain.service_id),
                      f"{domain.service_id[:8]}.up.railway.app")
        pointed = self.dns_configured(domain.domain, target)
        issued = pointed and self.clock() - domain.created_at >= self.settings["certificate_ms"] / 1000
        label = domain.domain.split(".", 1)[0]
        return {
            "__typename": "CustomDomain", "id": domain.id, "domain": domain.domain, "projectId": project.id,
            "serviceId": domain.service_id, "environmentId": domain.environment_id,
            "targetPort": domain.target_port, "createdAt": _iso(domain.created_at),
            "updatedAt": _iso(domain.created_at), "syncStatus": "ACTIVE",
            "status": {
                "dnsRecords": [{"hostlabel": label, "fqdn": domain.domain, "recordType": "DNS_RECORD_TYPE_CNAME",
                                "requiredValue": target, "currentValue": target if pointed else "",
                                "status": "DNS_RECORD_STATUS_PROPAGATED" if pointed
                                else "DNS_RECORD_STATUS_REQUIRES_UPDATE",
                                "zone": domain.domain.split(".", 1)[-1], "purpose": "DNS_RECORD_PURPOSE_TRAFFIC_ROUTE"}],
                "certificateStatus": "CERTIFICATE_STATUS_TYPE_VALID" if issued
                else "CERTIFICATE_STATUS_TYPE_ISSUING",
                "verified": pointed, "certificates": [], "cdnProvider": None,
            },
        }

    # -- queries ---------------------------------------------------------------------------------

    def _q_projects(self, args: dict, workspace: str):
        wanted = args.get("workspaceId") or args.get("teamId")
        if wanted and wanted != workspace:
            raise _Refused(NOT_AUTHORIZED, "FORBIDDEN")
        projects = sorted((p for p in self._projects.values() if p.workspace_id == workspace),
                          key=lambda p: p.created_at)
        start = int(args["after"]) + 1 if str(args.get("after") or "").isdigit() else 0
        first = max(1, min(100, int(args.get("first") or 100)))
        page = projects[start:start + first]
        for project in page:
            self._advance_project(project)
        edges = [{"node": self._project_view(p), "cursor": str(start + i)} for i, p in enumerate(page)]
        return {"edges": edges, "pageInfo": {"hasNextPage": start + first < len(projects), "hasPreviousPage": start > 0,
                                             "startCursor": edges[0]["cursor"] if edges else None,
                                             "endCursor": edges[-1]["cursor"] if edges else None}}

    def _q_project(self, args: dict, workspace: str):
        return self._project_view(self._project(args.get("id"), workspace))

    def _q_environments(self, args: dict, workspace: str):
        project = self._project(args.get("projectId"), workspace)
        return _connection([self._environment_view(project, e) for e in project.environments.values()])

    def _q_environment(self, args: dict, workspace: str):
        for project in self._projects.values():
            environment = project.environments.get(str(args.get("id") or ""))
            if environment is not None:
                if project.workspace_id != workspace:
                    raise _Refused(NOT_AUTHORIZED, "FORBIDDEN")
                self._advance_project(project)
                return self._environment_view(project, environment)
        raise _Refused("Environment not found", "NOT_FOUND")

    def _q_service(self, args: dict, workspace: str):
        project, service = self._find("services", args.get("id"), workspace)
        return self._service_view(project, service)

    def _q_service_instance(self, args: dict, workspace: str):
        project, service = self._find("services", args.get("serviceId"), workspace)
        environment_id = str(args.get("environmentId") or "")
        return self._instance_view(project, service, self._instance(project, service, environment_id))

    def _q_deployments(self, args: dict, workspace: str):
        data = self._input(args)
        project = self._project(data.get("projectId"), workspace) if data.get("projectId") else None
        if project is None and data.get("serviceId"):
            project, _ = self._find("services", data["serviceId"], workspace)
        if project is None:
            raise _Refused("projectId or serviceId is required", "BAD_USER_INPUT")
        status = data.get("status") or {}
        found = [d for d in project.deployments.values()
                 if (not data.get("serviceId") or d.service_id == data["serviceId"])
                 and (not data.get("environmentId") or d.environment_id == data["environmentId"])
                 and (not status.get("successfulOnly") or d.status == "SUCCESS")
                 and (not status.get("in") or d.status in status["in"])
                 and (not status.get("notIn") or d.status not in status["notIn"])]
        found.sort(key=lambda d: d.created_at, reverse=True)  # newest first, as Railway lists them
        return _connection([self._deployment_view(project, d) for d in found[: int(args.get("first") or 100)]])

    def _q_deployment(self, args: dict, workspace: str):
        project, deployment = self._find("deployments", args.get("id"), workspace)
        return self._deployment_view(project, deployment)

    def _q_variables(self, args: dict, workspace: str):
        """Names with their digests: the sandbox never keeps a value it could hand back."""
        project = self._project(args.get("projectId"), workspace)
        environment = self._environment(project, args.get("environmentId"))
        service_id = args.get("serviceId") or None
        if service_id and service_id not in project.services:
            raise _Refused("Service not found", "NOT_FOUND")
        stored = project.variables.get((environment.id, service_id), {})
        return {name: f"sandbox-digest:{entry['digest']}" for name, entry in sorted(stored.items())}

    def _q_domains(self, args: dict, workspace: str):
        project = self._project(args.get("projectId"), workspace)
        environment = self._environment(project, args.get("environmentId"))
        if str(args.get("serviceId") or "") not in project.services:
            raise _Refused("Service not found", "NOT_FOUND")
        return self._domains_view(project, args["serviceId"], environment.id)

    def _q_custom_domain(self, args: dict, workspace: str):
        project, domain = self._find("custom_domains", args.get("id"), workspace)
        return self._custom_domain_view(project, domain)

    def _q_volume_instance(self, args: dict, workspace: str):
        for project in self._projects.values():
            for volume in project.volumes.values():
                for instance in volume.instances.values():
                    if instance.id == args.get("id"):
                        if project.workspace_id != workspace:
                            raise _Refused(NOT_AUTHORIZED, "FORBIDDEN")
                        return self._volume_instance_view(volume, instance)
        raise _Refused("VolumeInstance not found", "NOT_FOUND")

    # -- projects and services --------------------------------------------------------------------

    def _m_project_create(self, args: dict, workspace: str):
        data = self._input(args)
        wanted = data.get("workspaceId") or data.get("teamId")
        if wanted and wanted != workspace:
            raise _Refused(NOT_AUTHORIZED, "FORBIDDEN")
        name = data.get("name") or f"{secrets.choice(('proud', 'calm', 'bold'))}-{secrets.choice(('river', 'stone'))}"
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise _Refused("Project name must be between 1 and 100 characters", "BAD_USER_INPUT")
        now = self.clock()
        project = Project(id=_id(), name=name, workspace_id=workspace, description=str(data.get("description") or ""),
                          created_at=now)
        environment = Environment(id=_id(), name=str(data.get("defaultEnvironmentName") or "production"), created_at=now)
        project.environments[environment.id] = environment
        self._projects[project.id] = project
        return self._project_view(project)

    def _m_project_delete(self, args: dict, workspace: str):
        project = self._project(args.get("id"), workspace)
        del self._projects[project.id]  # services, volumes, deployments, domains and variables go with it
        return True

    def _m_service_create(self, args: dict, workspace: str):
        data = self._input(args)
        project = self._project(data.get("projectId"), workspace)
        name = data.get("name") or f"service-{secrets.token_hex(2)}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$", name):
            raise _Refused("Invalid service name", "BAD_USER_INPUT")
        if any(s.name == name for s in project.services.values()):
            raise _Refused(f"Service name `{name}` is already taken in this project", "BAD_USER_INPUT")
        source = data.get("source") or {}
        if not isinstance(source, dict):
            raise _Refused("Invalid source", "BAD_USER_INPUT")
        image = source.get("image")
        if image is not None and (not isinstance(image, str) or not image.strip()):
            raise _Refused("Invalid image", "BAD_USER_INPUT")
        environments = list(project.environments)
        if data.get("environmentId"):
            environments = [self._environment(project, data["environmentId"]).id]
        service = Service(id=_id(), name=name, created_at=self.clock())
        for environment_id in environments:
            service.instances[environment_id] = ServiceInstance(environment_id=environment_id, image=image)
        project.services[service.id] = service
        variables = data.get("variables")
        for environment_id in environments:
            if isinstance(variables, dict) and variables:
                self._put_variables(project, environment_id, service.id, variables)
        if image:  # a service created with a source deploys at once, as Railway does
            for environment_id in environments:
                self._start_deployment(project, service, environment_id)
        return self._service_view(project, service)

    def _m_service_delete(self, args: dict, workspace: str):
        project, service = self._find("services", args.get("id"), workspace)
        del project.services[service.id]
        for deployment in [d for d in project.deployments.values() if d.service_id == service.id]:
            del project.deployments[deployment.id]
        for domains in (project.service_domains, project.custom_domains):
            for domain in [d for d in domains.values() if d.service_id == service.id]:
                del domains[domain.id]
        for key in [k for k in project.variables if k[1] == service.id]:
            del project.variables[key]
        for volume in project.volumes.values():  # the volume stays in the project, detached
            for instance in volume.instances.values():
                if instance.service_id == service.id:
                    instance.service_id = None
        return True

    def _m_service_instance_update(self, args: dict, workspace: str):
        project, service = self._find("services", args.get("serviceId"), workspace)
        instance = self._instance(project, service, str(args.get("environmentId") or ""))
        data = self._input(args)
        source = data.get("source")
        if source is not None:
            if not isinstance(source, dict) or not isinstance(source.get("image"), str) or not source["image"].strip():
                raise _Refused("Invalid source: the sandbox deploys images only", "BAD_USER_INPUT")
        region = data.get("region")
        multi = data.get("multiRegionConfig")
        if isinstance(multi, dict) and multi:
            region = next(iter(multi))
            replicas = (multi[region] or {}).get("numReplicas", 1) if isinstance(multi[region], dict) else 1
            instance.num_replicas = int(replicas)
        if region is not None and region not in REGIONS:
            raise _Refused(f"Invalid region {region}", "BAD_USER_INPUT")
        policy = data.get("restartPolicyType")
        if policy is not None and policy not in ("ON_FAILURE", "ALWAYS", "NEVER"):
            raise _Refused(f"Invalid restartPolicyType {policy}", "BAD_USER_INPUT")
        if source is not None:
            instance.image = source["image"].strip()
        if region is not None:
            instance.region = region
        if policy is not None:
            instance.restart_policy_type = policy
        if data.get("restartPolicyMaxRetries") is not None:
            instance.restart_policy_max_retries = int(data["restartPolicyMaxRetries"])
        if "healthcheckPath" in data:
            instance.healthcheck_path = data["healthcheckPath"]
        if data.get("sleepApplication") is not None:
            instance.sleep_application = bool(data["sleepApplication"])
        if data.get("numReplicas") is not None:
            instance.num_replicas = int(data["numReplicas"])
        return True

    def _m_limits_update(self, args: dict, workspace: str):
        data = self._input(args)
        project, service = self._find("services", data.get("serviceId"), workspace)
        instance = self._instance(project, service, str(data.get("environmentId") or ""))
        vcpus, memory = data.get("vCPUs"), data.get("memoryGB")
        for label, value, high in (("vCPUs", vcpus, 32), ("memoryGB", memory, 32)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not 0 < value <= high):
                raise _Refused(f"{label} must be between 0 and {high}", "BAD_USER_INPUT")
        instance.vcpus = vcpus if vcpus is not None else instance.vcpus
        instance.memory_gb = memory if memory is not None else instance.memory_gb
        return True

    # -- deployments -----------------------------------------------------------------------------

    def _m_deploy_v2(self, args: dict, workspace: str):
        """Returns the new deployment's id."""
        project, service = self._find("services", args.get("serviceId"), workspace)
        return self._start_deployment(project, service, str(args.get("environmentId") or "")).id

    def _m_deploy(self, args: dict, workspace: str):
        self._m_deploy_v2(args, workspace)
        return True

    def _m_deployment_redeploy(self, args: dict, workspace: str):
        project, deployment = self._find("deployments", args.get("id"), workspace)
        service = project.services[deployment.service_id]
        return self._deployment_view(project, self._start_deployment(project, service, deployment.environment_id))

    def _m_deployment_restart(self, args: dict, workspace: str):
        project, deployment = self._find("deployments", args.get("id"), workspace)
        if deployment.status not in ("SUCCESS", "CRASHED", "SLEEPING") or deployment.stopped:
            raise _Refused("Deployment is not running", "BAD_USER_INPUT")
        # The container restarts in place: same deployment, same image, no rebuild.
        deployment.restarts += 1
        deployment.updated_at = self.clock()
        if deployment.status == "CRASHED":
            self._schedule(deployment, ("DEPLOYING", self.settings["deploy_ms"]), ("SUCCESS", 0))
        return True

    def _m_deployment_stop(self, args: dict, workspace: str):
        project, deployment = self._find("deployments", args.get("id"), workspace)
        if deployment.status not in ACTIVE or deployment.stopped:
            raise _Refused("Deployment is not running", "BAD_USER_INPUT")
        deployment.stopped = True
        self._schedule(deployment, ("REMOVING", self.settings["stop_ms"]), ("REMOVED", 0))
        return True

    def _m_deployment_remove(self, args: dict, workspace: str):
        project, deployment = self._find("deployments", args.get("id"), workspace)
        del project.deployments[deployment.id]
        return True

    # -- volumes ---------------------------------------------------------------------------------

    def _m_volume_create(self, args: dict, workspace: str):
        data = self._input(args)
        project = self._project(data.get("projectId"), workspace)
        mount_path = data.get("mountPath")
        if not isinstance(mount_path, str) or not mount_path.startswith("/") or mount_path == "/":
            raise _Refused("mountPath must be an absolute path other than /", "BAD_USER_INPUT")
        environment_id = data.get("environmentId") or next(iter(project.environments))
        self._environment(project, environment_id)
        service_id = data.get("serviceId") or None
        if service_id:
            if service_id not in project.services:
                raise _Refused("Service not found", "NOT_FOUND")
            self._refuse_second_volume(project, service_id, environment_id)
        region = data.get("region") or DEFAULT_REGION
        if region not in REGIONS:
            raise _Refused(f"Invalid region {region}", "BAD_USER_INPUT")
        now = self.clock()
        volume = Volume(id=_id(), name=f"{secrets.choice(('quiet', 'misty', 'green'))}-volume-{secrets.token_hex(2)}",
                        created_at=now)
        volume.instances[environment_id] = VolumeInstance(
            id=_id(), environment_id=environment_id, service_id=service_id, mount_path=mount_path, region=region,
            size_mb=self.settings["volume_size_mb"], created_at=now)
        project.volumes[volume.id] = volume
        return self._volume_view(project, volume)

    @staticmethod
    def _refuse_second_volume(project: Project, service_id: str, environment_id: str) -> None:
        for volume in project.volumes.values():
            instance = volume.instances.get(environment_id)
            if instance is not None and instance.service_id == service_id:
                raise _Refused("Service already has a volume attached", "BAD_USER_INPUT")

    def _m_volume_update(self, args: dict, workspace: str):
        project, volume = self._find("volumes", args.get("volumeId"), workspace)
        name = self._input(args).get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", name):
            raise _Refused("Invalid volume name", "BAD_USER_INPUT")
        volume.name = name
        return self._volume_view(project, volume)

    def _m_volume_instance_update(self, args: dict, workspace: str):
        project, volume = self._find("volumes", args.get("volumeId"), workspace)
        data = self._input(args)
        environment_id = args.get("environmentId") or next(iter(volume.instances))
        instance = volume.instances.get(environment_id)
        if instance is None:
            raise _Refused("VolumeInstance not found", "NOT_FOUND")
        if "serviceId" in data:
            if data["serviceId"] and data["serviceId"] not in project.services:
                raise _Refused("Service not found", "NOT_FOUND")
            if data["serviceId"] and data["serviceId"] != instance.service_id:
                self._refuse_second_volume(project, data["serviceId"], environment_id)
            instance.service_id = data["serviceId"] or None
        if data.get("mountPath") is not None:
            if not str(data["mountPath"]).startswith("/") or data["mountPath"] == "/":
                raise _Refused("mountPath must be an absolute path other than /", "BAD_USER_INPUT")
            instance.mount_path = data["mountPath"]
        return True

    def _m_volume_delete(self, args: dict, workspace: str):
        project, volume = self._find("volumes", args.get("volumeId"), workspace)
        del project.volumes[volume.id]
        return True

    # -- variables (digests only) ----------------------------------------------------------------

    def _put_variables(self, project: Project, environment_id: str, service_id: str | None, values: dict) -> None:
        for name, value in values.items():
            if not VARIABLE_NAME.match(str(name)):
                raise _Refused(f"Invalid variable name {name!r}", "BAD_USER_INPUT")
            if not isinstance(value, str):
                raise _Refused(f"Variable {name}: the value must be a string", "BAD_USER_INPUT")
        stored = project.variables.setdefault((environment_id, service_id), {})
        for name, value in values.items():
            stored[name] = {"digest": _digest(value), "updated_at": self.clock()}

    def _variable_scope(self, data: dict, workspace: str) -> tuple[Project, str, str | None]:
        project = self._project(data.get("projectId"), workspace)
        environment = self._environment(project, data.get("environmentId"))
        service_id = data.get("serviceId") or None
        if service_id and service_id not in project.services:
            raise _Refused("Service not found", "NOT_FOUND")
        return project, environment.id, service_id

    def _m_variable_upsert(self, args: dict, workspace: str):
        data = self._input(args)
        project, environment_id, service_id = self._variable_scope(data, workspace)
        self._put_variables(project, environment_id, service_id, {data.get("name"): data.get("value")})
        return True

    def _m_variable_collection_upsert(self, args: dict, workspace: str):
        data = self._input(args)
        project, environment_id, service_id = self._variable_scope(data, workspace)
        values = data.get("variables")
        if not isinstance(values, dict):
            raise _Refused("variables must be an object of names to values", "BAD_USER_INPUT")
        if data.get("replace"):
            project.variables[(environment_id, service_id)] = {}
        self._put_variables(project, environment_id, service_id, values)
        return True

    def _m_variable_delete(self, args: dict, workspace: str):
        data = self._input(args)
        project, environment_id, service_id = self._variable_scope(data, workspace)
        if project.variables.get((environment_id, service_id), {}).pop(str(data.get("name")), None) is None:
            raise _Refused("Variable not found", "NOT_FOUND")
        return True

    # -- domains ---------------------------------------------------------------------------------

    def _m_service_domain_create(self, args: dict, workspace: str):
        data = self._input(args)
        project, service = self._find("services", data.get("serviceId"), workspace)
        self._instance(project, service, str(data.get("environmentId") or ""))
        port = data.get("targetPort")
        if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
            raise _Refused("targetPort must be a port number", "BAD_USER_INPUT")
        slug = re.sub(r"[^a-z0-9-]", "-", service.name.lower())[:40].strip("-") or "service"
        domain = ServiceDomain(id=_id(), domain=f"{slug}-production-{secrets.token_hex(2)}.up.railway.app",
                               service_id=service.id, environment_id=data["environmentId"], target_port=port,
                               created_at=self.clock())
        project.service_domains[domain.id] = domain
        return self._service_domain_view(domain)

    def _m_service_domain_delete(self, args: dict, workspace: str):
        project, domain = self._find("service_domains", args.get("id"), workspace)
        del project.service_domains[domain.id]
        return True

    def _m_custom_domain_create(self, args: dict, workspace: str):
        data = self._input(args)
        project = self._project(data.get("projectId"), workspace)
        environment = self._environment(project, data.get("environmentId"))
        service_id = str(data.get("serviceId") or "")
        if service_id not in project.services:
            raise _Refused("Service not found", "NOT_FOUND")
        hostname = str(data.get("domain") or "").strip().lower().rstrip(".")
        if not HOSTNAME.match(hostname):
            raise _Refused(f"Invalid domain {hostname!r}", "BAD_USER_INPUT")
        for other in self._projects.values():
            if any(d.domain == hostname for d in other.custom_domains.values()):
                raise _Refused("Domain is not available", "BAD_USER_INPUT")
        domain = CustomDomain(id=_id(), domain=hostname, service_id=service_id, environment_id=environment.id,
                              target_port=data.get("targetPort"), created_at=self.clock())
        project.custom_domains[domain.id] = domain
        return self._custom_domain_view(project, domain)

    def _m_custom_domain_delete(self, args: dict, workspace: str):
        project, domain = self._find("custom_domains", args.get("id"), workspace)
        del project.custom_domains[domain.id]
        return True

    # -- control surface -------------------------------------------------------------------------

    def inventory(self, _request: Request) -> Response:
        with self._lock:
            projects, environments, services, volumes, deployments, domains, custom, variables = ([] for _ in range(8))
            for project in self._projects.values():
                self._advance_project(project)
                projects.append({"id": project.id, "name": project.name, "workspace_id": project.workspace_id})
                environments += [{"project": project.name, "id": e.id, "name": e.name}
                                 for e in project.environments.values()]
                for service in project.services.values():
                    for instance in service.instances.values():
                        services.append({"project": project.name, "id": service.id, "name": service.name,
                                         "environment_id": instance.environment_id, "image": instance.image,
                                         "region": instance.region, "vcpus": instance.vcpus,
                                         "memory_gb": instance.memory_gb})
                for volume in project.volumes.values():
                    for instance in volume.instances.values():
                        volumes.append({"project": project.name, "id": volume.id, "name": volume.name,
                                        "mount_path": instance.mount_path, "service_id": instance.service_id,
                                        "region": instance.region, "size_mb": instance.size_mb})
                deployments += [{"project": project.name, "id": d.id, "service_id": d.service_id, "status": d.status,
                                 "stopped": d.stopped, "image": d.image, "restarts": d.restarts}
                                for d in sorted(project.deployments.values(), key=lambda d: d.created_at)]
                domains += [{"project": project.name, "domain": d.domain, "service_id": d.service_id}
                            for d in project.service_domains.values()]
                custom += [{"project": project.name, "domain": d.domain, "service_id": d.service_id}
                           for d in project.custom_domains.values()]
                for (environment_id, service_id), stored in project.variables.items():
                    variables += [{"project": project.name, "service_id": service_id, "name": name}
                                  for name in sorted(stored)]
        counts = {"projects": len(projects), "services": len(services), "volumes": len(volumes),
                  "deployments": len(deployments), "domains": len(domains), "custom_domains": len(custom),
                  "variables": len(variables)}
        return json_response({"projects": projects, "environments": environments, "services": services,
                              "volumes": volumes, "deployments": deployments, "domains": domains,
                              "custom_domains": custom, "variables": variables, "counts": counts})

    def get_config(self, _request: Request) -> Response:
        with self._lock:
            return json_response(dict(self.settings))

    def set_config(self, request: Request) -> Response:
        return update_settings(request, self.settings, self._lock,
                               minimum={**{name: 0 for name in self.settings}, "volume_size_mb": 1})

    def reset(self, _request: Request) -> Response:
        with self._lock:
            self._projects.clear()
        return Response(204)


def _select(value, selections: list, variables: dict):
    """Answer exactly the selected fields. A view's callable fields take the field's arguments."""
    if value is None or not selections:
        return value
    if isinstance(value, list):
        return [_select(item, selections, variables) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for sel in selections:
        if sel.name not in value:
            raise _GraphQLError(f'Cannot query field "{sel.name}" on type "{value.get("__typename", "Object")}".',
                                "GRAPHQL_VALIDATION_FAILED")
        field_value = value[sel.name]
        if callable(field_value):
            field_value = field_value({k: _value(v, variables) for k, v in sel.args.items()})
        out[sel.alias] = _select(field_value, sel.children, variables)
    return out
