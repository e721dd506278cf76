"""Talk to the cluster of the current kube context: create objects, list flexrl workloads, read pod logs."""

from __future__ import annotations

import json
from typing import Any

import yaml

from flexrl.deploy.objects import PART_OF, client, to_dicts


class ClusterError(ValueError):
    """The API server refused a request, or no cluster is configured: one line for the user."""


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (a sweep's override lists) as readable ``|`` blocks."""


_BlockDumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def to_yaml(objects: list) -> str:
    """The objects as a multi-document YAML stream, ready for ``kubectl apply -f -``."""
    return yaml.dump_all(to_dicts(objects), Dumper=_BlockDumper, sort_keys=False)


def _load(context: str | None) -> Any:
    c = client()
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config(context=context)
    except (ConfigException, FileNotFoundError, TypeError) as err:
        try:
            config.load_incluster_config()
        except ConfigException:
            raise ClusterError(f"no Kubernetes cluster: {err} (check `kubectl config current-context`)") from None
    return c.ApiClient()


def _refused(err) -> ClusterError:
    try:
        message = json.loads(err.body).get("message", err.reason)
    except (TypeError, ValueError):
        message = err.reason
    return ClusterError(f"the API server said {err.status}: {message}")


def submit(objects: list, context: str | None) -> int:
    """Create every object (a sweep's ConfigMap becomes owned by its Job, so deleting the Job removes it)."""
    c = client()
    from kubernetes.client.exceptions import ApiException

    api = _load(context)
    create = {
        "Job": c.BatchV1Api(api).create_namespaced_job,
        "ConfigMap": c.CoreV1Api(api).create_namespaced_config_map,
        "Deployment": c.AppsV1Api(api).create_namespaced_deployment,
        "Service": c.CoreV1Api(api).create_namespaced_service,
    }
    ordered = sorted(objects, key=lambda o: o.kind != "Job")  # the Job first: its uid owns the rest
    owner = None
    try:
        for obj in ordered:
            if owner is not None and obj.kind == "ConfigMap":
                obj.metadata.owner_references = [owner]
            made = create[obj.kind](obj.metadata.namespace, obj)
            if obj.kind == "Job":
                owner = c.V1OwnerReference(api_version="batch/v1", kind="Job", name=made.metadata.name,
                                           uid=made.metadata.uid)
            print(f"created {obj.kind.lower()}/{made.metadata.name} in namespace {made.metadata.namespace}")
    except ApiException as err:
        raise _refused(err) from None
    return 0


def status(namespace: str, context: str | None) -> str:
    """One line per flexrl Job (succeeded/failed/active of its completions) and Deployment (ready replicas)."""
    c = client()
    from kubernetes.client.exceptions import ApiException

    api = _load(context)
    selector = f"app.kubernetes.io/part-of={PART_OF}"
    try:
        jobs = c.BatchV1Api(api).list_namespaced_job(namespace, label_selector=selector).items
        deployments = c.AppsV1Api(api).list_namespaced_deployment(namespace, label_selector=selector).items
    except ApiException as err:
        raise _refused(err) from None
    lines = [f"{'NAME':40s} {'KIND':10s} STATUS"]
    for j in jobs:
        s, total = j.status, j.spec.completions or 1
        state = "suspended (queued)" if j.spec.suspend else \
            f"{s.succeeded or 0}/{total} succeeded, {s.failed or 0} failed, {s.active or 0} running"
        lines.append(f"{j.metadata.name:40s} {'job':10s} {state}")
    for d in deployments:
        lines.append(f"{d.metadata.name:40s} {'deployment':10s} {d.status.ready_replicas or 0}/{d.spec.replicas} ready")
    return "\n".join(lines) if len(lines) > 1 else f"no flexrl workloads in namespace {namespace}"


def logs(namespace: str, name: str, index: int | None, follow: bool, tail: int | None, context: str | None) -> int:
    """Print the logs of the pods of Job or Deployment ``name`` (``index``: one trial of a sweep)."""
    c = client()
    from kubernetes.client.exceptions import ApiException

    core = c.CoreV1Api(_load(context))
    selector = f"app.kubernetes.io/name={name}"
    if index is not None:
        selector += f",batch.kubernetes.io/job-completion-index={index}"
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        if not pods:
            raise ClusterError(f"no pods of {name!r} in namespace {namespace} (flexrl k8s status lists the workloads)")
        for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
            print(f"==> {pod.metadata.name} ({pod.status.phase})", flush=True)
            if follow:
                stream = core.read_namespaced_pod_log(pod.metadata.name, namespace, follow=True, tail_lines=tail,
                                                      _preload_content=False)
                for chunk in stream.stream():
                    print(chunk.decode(errors="replace"), end="", flush=True)
            else:
                print(core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=tail), end="")
    except ApiException as err:
        raise _refused(err) from None
    return 0
