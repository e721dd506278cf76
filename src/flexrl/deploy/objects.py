"""Kubernetes objects of flex-rl workloads, built with the official client's models.

One function per workload: a training Job, a sweep (a ConfigMap of override sets plus one Indexed Job whose
completion index picks the set) and LLM serving (Deployment + Service, flexrl's server or vLLM with tensor
parallelism over the pod's GPUs). Pods run as the images' non-root user with a read-only root file system;
every run writes under the shared workspace volume mounted at ``/workspace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKSPACE = "/workspace"
TRIALS_DIR = "/etc/flexrl/trials"
SERVE_PORT = 8000
USER_ID = 10001
PART_OF = "flexrl"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_RESOURCE = "nvidia.com/gpu"


def client():
    """The ``kubernetes.client`` module; ImportError naming the extra when it is missing."""
    try:
        from kubernetes import client as k8s_client
    except ImportError:
        raise ImportError("flexrl k8s needs the Kubernetes client: pip install 'flexrl[k8s]'") from None
    return k8s_client


@dataclass
class ClusterSettings:
    """Where and how workloads run; the defaults match ``deploy/k8s/base``.

    Attributes:
        namespace: namespace of every object.
        image: the training image (``deploy/docker/Dockerfile``, target ``train``).
        serve_image: flexrl's CPU serving image (target ``serve``).
        gpu_image: the GPU image with vLLM and torchrun (``deploy/docker/Dockerfile.gpu``).
        image_pull_policy: "IfNotPresent"; "Never" for images loaded straight into Minikube.
        workspace_claim: the PersistentVolumeClaim mounted at ``/workspace`` (ReadWriteMany for sweeps).
        service_account: the pods' ServiceAccount (on GKE it carries Workload Identity).
        queue: a Kueue LocalQueue; Jobs are then created suspended and admitted by Kueue (None: no Kueue).
        node_selector: node labels every pod must match.
        gpu_node_selector: node labels of GPU pods, e.g. ``cloud.google.com/gke-accelerator=nvidia-l4``.
        gpu_tolerations: taints of GPU nodes that GPU pods tolerate, as "key" or "key=value", all NoSchedule.
        api_key_secret: the Secret whose ``api-key`` entry the LLM server requires of every request.
    """

    namespace: str = "flexrl"
    image: str = "localhost/flexrl-train:0.1.0"
    serve_image: str = "localhost/flexrl-serve:0.1.0"
    gpu_image: str = "localhost/flexrl-gpu:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    workspace_claim: str = "flexrl-workspace"
    service_account: str = "flexrl"
    queue: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: list[str] = field(default_factory=lambda: [GPU_RESOURCE])
    api_key_secret: str = "flexrl-serve"


@dataclass
class Resources:
    """Requests of one container, also its limits (Guaranteed QoS: a trial's speed does not depend on neighbours).

    Attributes:
        cpus: CPU cores, as Kubernetes writes them ("2", "500m").
        memory: memory, as Kubernetes writes it ("4Gi").
        gpus: NVIDIA GPUs (0: none; then no GPU selector or toleration either).
    """

    cpus: str = "2"
    memory: str = "4Gi"
    gpus: int = 0


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/component": component}


def _meta(settings: ClusterSettings, name: str, component: str, **labels: str):
    return client().V1ObjectMeta(name=name, namespace=settings.namespace, labels={**_labels(name, component), **labels})


def _container(settings: ClusterSettings, image: str, resources: Resources, *, args: list[str],
               command: list[str] | None = None, env: list | None = None, mounts: list | None = None, **extra):
    c = client()
    amounts = {"cpu": resources.cpus, "memory": resources.memory}
    if resources.gpus:
        amounts[GPU_RESOURCE] = str(resources.gpus)
    return c.V1Container(
        name="main", image=image, image_pull_policy=settings.image_pull_policy, command=command, args=args,
        env=env, resources=c.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts)),
        volume_mounts=[c.V1VolumeMount(name="workspace", mount_path=WORKSPACE),
                       c.V1VolumeMount(name="tmp", mount_path="/tmp"),
                       c.V1VolumeMount(name="cache", mount_path=f"/home/{PART_OF}/.cache"), *(mounts or [])],
        security_context=c.V1SecurityContext(
            allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True,
            run_as_user=USER_ID, run_as_group=USER_ID, capabilities=c.V1Capabilities(drop=["ALL"])),
        **extra)


def _pod_spec(settings: ClusterSettings, container, *, gpus: int, restart: str, volumes: list | None = None):
    c = client()
    tolerations, selector = None, dict(settings.node_selector)
    if gpus:
        selector.update(settings.gpu_node_selector)
        tolerations = [c.V1Toleration(key=t.partition("=")[0], operator="Equal" if "=" in t else "Exists",
                                      value=t.partition("=")[2] or None, effect="NoSchedule")
                       for t in settings.gpu_tolerations]
    return c.V1PodSpec(
        containers=[container], restart_policy=restart, service_account_name=settings.service_account,
        automount_service_account_token=False, node_selector=selector or None, tolerations=tolerations,
        security_context=c.V1PodSecurityContext(fs_group=USER_ID, seccomp_profile=c.V1SeccompProfile(type="RuntimeDefault")),
        volumes=[c.V1Volume(name="workspace", persistent_volume_claim=c.V1PersistentVolumeClaimVolumeSource(
                     claim_name=settings.workspace_claim)),
                 c.V1Volume(name="tmp", empty_dir=c.V1EmptyDirVolumeSource()),
                 c.V1Volume(name="cache", empty_dir=c.V1EmptyDirVolumeSource()), *(volumes or [])])


def _job(settings: ClusterSettings, name: str, component: str, pod_spec, **job_fields):
    c = client()
    queue = {QUEUE_LABEL: settings.queue} if settings.queue else {}
    return c.V1Job(
        api_version="batch/v1", kind="Job", metadata=_meta(settings, name, component, **queue),
        spec=c.V1JobSpec(
            suspend=True if settings.queue else None, backoff_limit=job_fields.pop("backoff_limit", 2),
            ttl_seconds_after_finished=7 * 24 * 3600,
            template=c.V1PodTemplateSpec(metadata=c.V1ObjectMeta(labels=_labels(name, component)), spec=pod_spec),
            **job_fields))


def train_job(settings: ClusterSettings, name: str, overrides: list[str], resources: Resources | None = None):
    """A Job running ``flexrl train <overrides>`` once; its run directory lands in the shared workspace."""
    resources = resources or Resources()
    container = _container(settings, settings.image, resources,
                           args=["train", *overrides, f"experiment.workspace={WORKSPACE}", "tracking.progress=false"])
    return _job(settings, name, "train", _pod_spec(settings, container, gpus=resources.gpus, restart="Never"))


def sweep_objects(settings: ClusterSettings, name: str, trials: list[list[str]], run_root: str,
                  parallelism: int = 4, resources: Resources | None = None) -> list:
    """A ConfigMap of the trials' override sets (key ``i``: trial i, one override a line) and one Indexed Job
    whose pod at completion index ``i`` runs trial ``i``.

    Args:
        trials: override sets, e.g. from ``flexrl.config.sweep_expand.expand_sweep``.
        run_root: the sweep's directory under ``/workspace``; trial ``i`` writes ``<run_root>/<i>``, the
            layout of a local Hydra sweep (``<workspace>/<experiment>/sweep-<time>/<n>``).
        parallelism: trials running at once.
    """
    c = client()
    resources = resources or Resources()
    if any("\n" in o for t in trials for o in t):
        raise ValueError("an override holds a line break; a sweep's overrides are stored one a line")
    config_map = c.V1ConfigMap(api_version="v1", kind="ConfigMap", metadata=_meta(settings, f"{name}-trials", "sweep"),
                               data={str(i): "\n".join(t) + "\n" for i, t in enumerate(trials)})
    container = _container(
        settings, settings.image, resources,
        args=["k8s", "trial", "--trials", TRIALS_DIR, "--run-root", run_root],
        mounts=[c.V1VolumeMount(name="trials", mount_path=TRIALS_DIR, read_only=True)])
    pod = _pod_spec(settings, container, gpus=resources.gpus, restart="Never", volumes=[
        c.V1Volume(name="trials", config_map=c.V1ConfigMapVolumeSource(name=config_map.metadata.name))])
    job = _job(settings, name, "sweep", pod, completion_mode="Indexed", completions=len(trials),
               parallelism=max(1, min(parallelism, len(trials))), backoff_limit=None, backoff_limit_per_index=1)
    return [config_map, job]


def serve_objects(settings: ClusterSettings, name: str, backend: str = "flexrl", model: str | None = None,
                  resources: Resources | None = None, replicas: int = 1, served_model_name: str | None = None,
                  extra_args: list[str] | None = None) -> list:
    """A Deployment and a ClusterIP Service of an OpenAI-compatible LLM server on port 8000.

    Args:
        backend: "flexrl" (``python -m flexrl.llm.server``, CPU, the embedded model by default) or "vllm"
            (tensor parallelism over all ``resources.gpus`` GPUs of the pod; needs ``model``).
        model: the model: a Hugging Face id or a path under ``/workspace``.
        served_model_name: the name clients send as ``model`` (default: the backend's own choice).
        extra_args: more server flags, e.g. a vLLM preset's memory settings
            (:meth:`~flexrl.llm.vllm_presets.VLLMPreset.server_flags`).
    """
    c = client()
    resources = resources or Resources(cpus="2", memory="4Gi")
    key = c.V1EnvVar(name="FLEXRL_SERVE_API_KEY" if backend == "flexrl" else "VLLM_API_KEY",
                     value_from=c.V1EnvVarSource(secret_key_ref=c.V1SecretKeySelector(name=settings.api_key_secret, key="api-key")))
    named = ["--served-model-name", served_model_name] if served_model_name else []
    mounts, volumes = [], []
    if backend == "flexrl":
        image, command = settings.serve_image, None
        args = [*(["--model", model] if model else []), "--threads", resources.cpus, *named]
        # Every route of flexrl's server needs the API key, so the probes only check the port.
        check = {"tcp_socket": c.V1TCPSocketAction(port=SERVE_PORT)}
    elif backend == "vllm":
        if not model:
            raise ValueError("backend vllm needs a model (a Hugging Face id or a path under /workspace)")
        if resources.gpus < 1:
            raise ValueError("backend vllm needs at least one GPU per pod (--gpus)")
        image, command = settings.gpu_image, ["vllm", "serve"]
        args = [model, "--host", "0.0.0.0", "--port", str(SERVE_PORT), "--tensor-parallel-size", str(resources.gpus),
                "--download-dir", f"{WORKSPACE}/models", *named, *(extra_args or [])]
        # Tensor-parallel workers exchange activations through shared memory (NCCL); the default 64 MiB is too small.
        mounts = [c.V1VolumeMount(name="dshm", mount_path="/dev/shm")]
        volumes = [c.V1Volume(name="dshm", empty_dir=c.V1EmptyDirVolumeSource(medium="Memory", size_limit="16Gi"))]
        check = {"http_get": c.V1HTTPGetAction(path="/health", port=SERVE_PORT)}
    else:
        raise ValueError(f"backend={backend!r}; allowed: flexrl, vllm")
    env = [key, c.V1EnvVar(name="HF_HOME", value=f"{WORKSPACE}/hf-cache")]
    container = _container(
        settings, image, resources, command=command, args=args, env=env, mounts=mounts,
        ports=[c.V1ContainerPort(container_port=SERVE_PORT, name="http")],
        readiness_probe=c.V1Probe(**check, period_seconds=10), liveness_probe=c.V1Probe(**check, period_seconds=10),
        startup_probe=c.V1Probe(**check, period_seconds=10, failure_threshold=90))  # model loads take minutes
    labels = _labels(name, "serve")
    deployment = c.V1Deployment(
        api_version="apps/v1", kind="Deployment", metadata=_meta(settings, name, "serve"),
        spec=c.V1DeploymentSpec(
            replicas=replicas, selector=c.V1LabelSelector(match_labels=labels),
            template=c.V1PodTemplateSpec(metadata=c.V1ObjectMeta(labels=labels),
                                         spec=_pod_spec(settings, container, gpus=resources.gpus, restart="Always",
                                                        volumes=volumes))))
    service = c.V1Service(
        api_version="v1", kind="Service", metadata=_meta(settings, name, "serve"),
        spec=c.V1ServiceSpec(selector=labels, ports=[c.V1ServicePort(name="http", port=SERVE_PORT, target_port="http")]))
    return [deployment, service]


def to_dicts(objects: list) -> list[dict[str, Any]]:
    """Plain dicts of client objects, as the API server receives them (camelCase keys, no nulls)."""
    from kubernetes.client import ApiClient

    return [ApiClient().sanitize_for_serialization(o) for o in objects]
