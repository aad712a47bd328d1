"""Kubernetes: a run as an indexed `batch/v1` Job, one pod per node, each running torchrun, which
meet through c10d rendezvous at pod 0 (found by name through a headless Service).

The manifest is plain data built by pure functions (so `--dry-run` and the offline schema tests see
exactly what is submitted); the official `kubernetes` client, an optional dependency
(`pip install 'ddpm-tui[k8s]'`), is imported only to talk to a cluster. The pods reach the store
through its URL in a Secret, never in the manifest, and write the run directory on a volume claim
mounted where this machine keeps its runs.

Not used: Kubeflow's PyTorchJob. It needs the training operator installed in the cluster and its
schema is a custom resource; an indexed Job with torchrun needs neither and runs on any cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput, WorkFailed

RDZV_PORT = 29400
CONTAINER = "trainer"
GPU_RESOURCE = "nvidia.com/gpu"
DNS_LABEL_MAX = 63


@dataclass(frozen=True)
class Placement:
    """Where and how a run trains on Kubernetes."""

    image: str
    nodes: int = 1
    gpus_per_node: int = 1
    namespace: str = "default"
    store_secret: str = "ddpm-tui-store"  # a Secret whose key `url` holds the store's URL
    runs_claim: str | None = None  # a PersistentVolumeClaim mounted at the runs directory

    def check(self) -> "Placement":
        if not self.image:
            raise BadInput("--executor k8s needs --image IMAGE (a container image with ddpm-tui installed)",
                           field="image")
        for name, value in (("nodes", self.nodes), ("gpus-per-node", self.gpus_per_node)):
            if value < 1:
                raise BadInput(f"--{name}: must be at least 1, got {value}", field=name)
        for name, value in (("namespace", self.namespace), ("store-secret", self.store_secret),
                            ("runs-claim", self.runs_claim)):
            if value is not None and not is_dns_label(value):
                raise BadInput(f"--{name}: {value!r} is not a Kubernetes name (lowercase letters, digits and '-', "
                               f"at most {DNS_LABEL_MAX})", field=name)
        return self


def is_dns_label(name: str) -> bool:
    """RFC 1123 label: what Kubernetes accepts as a namespace, Service or Secret name."""
    return (0 < len(name) <= DNS_LABEL_MAX and name[0].isalnum() and name[-1].isalnum()
            and all(c.islower() or c.isdigit() or c == "-" for c in name))


def job_name(run_id: int | str) -> str:
    return f"ddpm-tui-run-{run_id}"


def torchrun_command(run_id: int | str, placement: Placement, name: str) -> list[str]:
    """The command of every pod of job `name`: torchrun with this node's share of the processes.
    Pod 0 hosts the c10d rendezvous; its stable name comes from the Job's index and the headless
    Service."""
    entry = ["-m", "core.runner.execute", str(run_id)]
    torchrun = ["python", "-m", "torch.distributed.run", f"--nproc-per-node={placement.gpus_per_node}"]
    if placement.nodes == 1:
        return [*torchrun, "--standalone", *entry]
    return [*torchrun, f"--nnodes={placement.nodes}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={name}-0.{name}:{RDZV_PORT}", f"--rdzv-id={name}", *entry]


def manifests(run_id: int | str, runs_dir: Path, placement: Placement, name: str | None = None) -> list[dict]:
    """The headless Service and the indexed Job (both called `name`) that train run `run_id`."""
    name = name or job_name(run_id)
    labels = {"app.kubernetes.io/name": "ddpm-tui", "ddpm-tui/run": str(run_id)}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": placement.namespace, "labels": labels},
        "spec": {"clusterIP": "None", "selector": {"job-name": name},
                 "ports": [{"name": "rendezvous", "port": RDZV_PORT, "targetPort": RDZV_PORT}]},
    }
    mounts = [{"name": "shm", "mountPath": "/dev/shm"}]
    volumes: list[dict] = [{"name": "shm", "emptyDir": {"medium": "Memory"}}]
    if placement.runs_claim:
        mounts.append({"name": "runs", "mountPath": str(runs_dir)})
        volumes.append({"name": "runs", "persistentVolumeClaim": {"claimName": placement.runs_claim}})
    container = {
        "name": CONTAINER,
        "image": placement.image,
        "command": torchrun_command(run_id, placement, name),
        "env": [
            {"name": "DDPM_TUI_DB", "valueFrom": {"secretKeyRef": {"name": placement.store_secret, "key": "url"}}},
            {"name": "DDPM_TUI_RUNS", "value": str(runs_dir)},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "ports": [{"containerPort": RDZV_PORT, "name": "rendezvous"}],
        "resources": {"limits": {GPU_RESOURCE: str(placement.gpus_per_node)}},
        "volumeMounts": mounts,
    }
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": placement.namespace, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": placement.nodes,
            "parallelism": placement.nodes,
            "backoffLimit": 0,  # a failed run is resumed from its checkpoint by its user, not retried blindly
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "subdomain": name,
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 120,  # SIGTERM: the trainer checkpoints, then ends stopped
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    return [service, job]


def manifest_list(items: list[dict]) -> dict:
    """One document `kubectl apply -f` takes."""
    return {"apiVersion": "v1", "kind": "List", "items": items}


# ---- the cluster ------------------------------------------------------------------------------------
class Cluster:
    """A Kubernetes API server, through the official client (kubeconfig, or the in-cluster account)."""

    def __init__(self, api_client=None):
        try:
            from kubernetes import client, config
        except ImportError:
            raise BadInput("--executor k8s: the kubernetes client is not installed "
                           "(pip install 'ddpm-tui[k8s]')") from None
        self._client = client
        if api_client is None:
            try:
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # read now, not at import
            except Exception:
                try:
                    config.load_incluster_config()
                except Exception:
                    raise BadInput("--executor k8s: no cluster configured (no kubeconfig, not inside a pod)") from None
            api_client = client.ApiClient()
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    def _call(self, what: str, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise WorkFailed(f"Kubernetes: {what}: {exc.status} {exc.reason}") from None
        except HTTPError as exc:
            raise WorkFailed(f"Kubernetes: {what}: cannot reach the API server ({exc.__class__.__name__})") from None

    def check_namespace(self, namespace: str) -> None:
        """BadInput when `namespace` does not exist (so nothing is stored for a typo)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise BadInput(f"--namespace {namespace}: no such namespace in the cluster", field="namespace") from None
            raise WorkFailed(f"Kubernetes: reading namespace {namespace}: {exc.status} {exc.reason}") from None

    def submit(self, items: list[dict]) -> None:
        service, job = items
        namespace = job["metadata"]["namespace"]
        self._call("creating the rendezvous service", self.core.create_namespaced_service, namespace, service)
        self._call("creating the job", self.batch.create_namespaced_job, namespace, job)

    def status(self, namespace: str, name: str) -> str:
        """pending | running | succeeded | failed | gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            job = self.batch.read_namespaced_job_status(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return "gone"
            raise WorkFailed(f"Kubernetes: job {namespace}/{name}: {exc.status} {exc.reason}") from None
        state = job.status
        if state.succeeded and state.succeeded >= (job.spec.completions or 1):
            return "succeeded"
        if state.failed:
            return "failed"
        return "running" if state.active else "pending"

    def logs(self, namespace: str, name: str, tail: int = 200) -> str:
        """The log of pod 0 (global rank 0 trains there when there is one node; it is the rendezvous host)."""
        pods = self._call("listing the run's pods", self.core.list_namespaced_pod, namespace,
                          label_selector=f"job-name={name}")
        first = [p for p in pods.items if p.metadata.annotations and
                 p.metadata.annotations.get("batch.kubernetes.io/job-completion-index") == "0"] or pods.items
        if not first:
            return ""
        return self._call("reading the pod's log", self.core.read_namespaced_pod_log, first[0].metadata.name,
                          namespace, container=CONTAINER, tail_lines=tail)

    def delete(self, namespace: str, name: str, grace_s: int | None = None) -> bool:
        """Delete the job (its pods get SIGTERM, then SIGKILL after `grace_s` or their own grace
        period) and its service. False when the job was already gone."""
        from kubernetes.client.exceptions import ApiException

        body = self._client.V1DeleteOptions(propagation_policy="Foreground", grace_period_seconds=grace_s)
        try:
            self.batch.delete_namespaced_job(name, namespace, body=body)
        except ApiException as exc:
            if exc.status != 404:
                raise WorkFailed(f"Kubernetes: deleting job {namespace}/{name}: {exc.status} {exc.reason}") from None
            return False
        try:
            self.core.delete_namespaced_service(name, namespace)
        except ApiException:
            pass  # the job is what trains; a left-over service is harmless
        return True
