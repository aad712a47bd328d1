"""Kubernetes: a run as an indexed `batch/v1` Job, one pod per node, each running torchrun, which
meet through c10d rendezvous at pod 0 (found by name through a headless Service).

The manifest is plain data built by pure functions (so `--dry-run` and the offline schema tests see
exactly what is submitted); the official `kubernetes` client, an optional dependency
(`pip install 'ddpm-tui[k8s]'`), is imported only to talk to a cluster. The pods reach the store
through its URL in a Secret, never in the manifest, and write the run directory on a volume claim
mounted where this machine keeps its runs; the dataset is mounted read-only where --data names it.

The pods meet "restricted" pod security (non-root, no privilege escalation, no capabilities,
the runtime's seccomp profile), ask for CPU and memory (so they are not evicted first, and quotas
admit them), and a pod lost to a disruption (preemption, a node drained) is replaced without
counting against --max-restarts.

Not used: Kubeflow's PyTorchJob. It needs the training operator installed in the cluster and its
schema is a custom resource; an indexed Job with torchrun needs neither and runs on any cluster.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.errors import BadInput, WorkFailed

# Each run's rendezvous gets its own port: two jobs whose first pods share a node (host networking,
# or a port published on the node) must not collide. The span stays below Linux's ephemeral ports.
RDZV_PORT_BASE = 29400
RDZV_PORT_SPAN = 3000
CONTAINER = "trainer"
GPU_RESOURCE = "nvidia.com/gpu"
DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
INT32_MAX = 2**31 - 1  # counts, user ids and seconds in a manifest are 32-bit
MAX_RESTARTS = 1000
JOB_TTL_S = 3 * 24 * 3600  # a finished job (and, through its owner reference, its Service) is removed
CPU_PER_GPU = 4  # a training process and its data loading
HOST_BYTES_PER_PROCESS = 3 << 30  # Python, torch, the CUDA context and a batch being loaded
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
CPU_QUANTITY = re.compile(r"(\d+(\.\d+)?|\d+m)")
MEMORY_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?")
LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DISRUPTION = {"type": "DisruptionTarget", "status": "True"}  # preempted, evicted, its node drained
JOB_ENV = "DDPM_TUI_K8S_JOB"  # in a pod: its job's name (a SIGTERM without a user's stop is a disruption)


@dataclass(frozen=True)
class Placement:
    """Where and how a run trains on Kubernetes (stored with the run, so a resume asks for the same)."""

    image: str
    nodes: int = 1
    gpus_per_node: int = 1
    namespace: str = "default"
    store_secret: str = "ddpm-tui-store"  # a Secret whose key `url` holds the store's URL
    runs_claim: str | None = None  # a PersistentVolumeClaim mounted at the runs directory
    data_claim: str | None = None  # a PersistentVolumeClaim holding the dataset
    data_volume: str | None = None  # hostPath:/PATH or nfs:SERVER:/PATH holding the dataset
    data_path: str | None = None  # where the dataset is mounted: the run's --data
    cpu: str | None = None  # per pod; default CPU_PER_GPU per GPU
    memory: str | None = None  # per pod; default from the run's size
    node_selector: tuple[str, ...] = ()  # KEY=VALUE
    tolerations: tuple[str, ...] = ()  # KEY[=VALUE][:EFFECT]
    priority_class: str | None = None
    max_restarts: int = 0  # failed pods replaced; disruptions do not count
    run_as_user: int = 1000
    ttl_s: int = JOB_TTL_S

    def check(self) -> "Placement":
        """BadInput naming the first option Kubernetes would refuse (or that could not work)."""
        if not self.image:
            raise BadInput("--executor k8s needs --image IMAGE (a container image with ddpm-tui installed)",
                           field="image")
        self._check_counts()
        self._check_names()
        self._check_data()
        _check_quantity("cpu", self.cpu, CPU_QUANTITY, "e.g. 8 or 500m")
        _check_quantity("memory", self.memory, MEMORY_QUANTITY, "e.g. 32Gi or 512Mi")
        node_selector(self.node_selector)
        for spec in self.tolerations:
            toleration(spec)
        return self

    def _check_counts(self) -> None:
        for name, value, least, most in (("nodes", self.nodes, 1, INT32_MAX),
                                         ("gpus-per-node", self.gpus_per_node, 1, 1024),
                                         ("max-restarts", self.max_restarts, 0, MAX_RESTARTS),
                                         ("run-as-user", self.run_as_user, 1, INT32_MAX),
                                         ("job-ttl", self.ttl_s, 0, INT32_MAX)):
            if not least <= value <= most:
                raise BadInput(f"--{name}: must be between {least} and {most}, got {value}", field=name)

    def _check_names(self) -> None:
        for name, value in (("namespace", self.namespace), ("store-secret", self.store_secret),
                            ("runs-claim", self.runs_claim), ("data-claim", self.data_claim)):
            if value is not None and not is_dns_label(value):
                raise BadInput(f"--{name}: {value!r} is not a Kubernetes name (lowercase letters, digits and '-', "
                               f"at most {DNS_LABEL_MAX})", field=name)
        if self.priority_class is not None and not is_dns_subdomain(self.priority_class):
            raise BadInput(f"--priority-class: {self.priority_class!r} is not a Kubernetes name",
                           field="priority-class")

    def _check_data(self) -> None:
        if self.data_claim and self.data_volume:
            raise BadInput("--data-claim and --data-volume both mount the dataset: give one", field="data-volume")
        if self.data_volume:
            data_volume_source(self.data_volume)

    def fitted(self, cfg) -> "Placement":
        """This placement for the run `cfg` describes: the dataset mounted where --data names it,
        and memory asked for as the run's size needs."""
        data_path = None
        if self.data_claim or self.data_volume:
            if not PurePosixPath(cfg.data).is_absolute():
                raise BadInput(f"--data {cfg.data}: with --data-claim or --data-volume, --data is where the "
                               "dataset is mounted in the pods: an absolute path", field="data")
            data_path = cfg.data
        memory = self.memory or default_memory(cfg, self.gpus_per_node)
        return dataclasses.replace(self, data_path=data_path, memory=memory)


def _check_quantity(name: str, value: str | None, pattern: re.Pattern, example: str) -> None:
    positive = value is not None and any(c in "123456789" for c in value)  # zero would request nothing
    if value is not None and (not pattern.fullmatch(value) or not positive):
        raise BadInput(f"--{name}: {value!r} is not a positive Kubernetes quantity ({example})", field=name)


def default_memory(cfg, gpus: int) -> str:
    """Host memory for a pod of `gpus` training processes: each holds the framework and a copy of
    the run's weights and optimiser state (loaded and saved through host memory)."""
    from core.train.resources import training_memory

    per_process = HOST_BYTES_PER_PROCESS + training_memory(cfg).parameter_bytes
    return f"{-(-gpus * per_process // (1 << 20))}Mi"


def is_dns_label(name: str) -> bool:
    """RFC 1123 label: what Kubernetes accepts as a namespace, Service or Secret name."""
    return (0 < len(name) <= DNS_LABEL_MAX and name[0].isalnum() and name[-1].isalnum()
            and all(c.islower() or c.isdigit() or c == "-" for c in name))


def is_dns_subdomain(name: str) -> bool:
    """RFC 1123 subdomain: what Kubernetes accepts as a PriorityClass name."""
    return len(name) <= DNS_SUBDOMAIN_MAX and DNS_SUBDOMAIN.fullmatch(name) is not None


def node_selector(pairs) -> dict[str, str]:
    """--node-selector KEY=VALUE options as a nodeSelector."""
    selector = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
            raise BadInput(f"--node-selector: {pair!r} is not KEY=VALUE with a node label's key and value",
                           field="node-selector")
        selector[key] = value
    return selector


def toleration(spec: str) -> dict:
    """--toleration KEY[=VALUE][:EFFECT] as a toleration (no value: any value of the taint KEY)."""
    taint, _, effect = spec.partition(":")
    key, eq, value = taint.partition("=")
    if not LABEL_KEY.fullmatch(key) or (eq and not LABEL_VALUE.fullmatch(value)) or \
            (effect and effect not in TOLERATION_EFFECTS):
        raise BadInput(f"--toleration: {spec!r} is not KEY[=VALUE][:EFFECT] (EFFECT one of "
                       f"{', '.join(TOLERATION_EFFECTS)})", field="toleration")
    item = {"key": key, "operator": "Equal" if eq else "Exists"}
    if eq:
        item["value"] = value
    if effect:
        item["effect"] = effect
    return item


def data_volume_source(spec: str) -> dict:
    """--data-volume hostPath:/PATH or nfs:SERVER:/PATH as a volume source, mounted read-only."""
    kind, _, rest = spec.partition(":")
    server, _, path = rest.rpartition(":") if kind == "nfs" else ("", "", rest)
    if kind not in ("hostPath", "nfs") or not PurePosixPath(path).is_absolute() or (kind == "nfs") != bool(server):
        raise BadInput(f"--data-volume: {spec!r} is not hostPath:/PATH or nfs:SERVER:/PATH", field="data-volume")
    if kind == "nfs":
        return {"nfs": {"server": server, "path": path, "readOnly": True}}
    return {"hostPath": {"path": path, "type": "Directory"}}


def job_name(run_id: int | str) -> str:
    return f"ddpm-tui-run-{run_id}"


def rdzv_port(run_id: int) -> int:
    """The rendezvous port of run `run_id`'s job."""
    return RDZV_PORT_BASE + run_id % RDZV_PORT_SPAN


def torchrun_command(run_id: int, placement: Placement, name: str) -> list[str]:
    """The command of every pod of job `name`: torchrun with this node's share of the processes.
    Pod 0 hosts the c10d rendezvous, told so (`is_host`) rather than left to guess it from whether
    its own DNS record resolves yet (if it does not, every pod waits as a client until they give up)."""
    entry = ["-m", "core.runner.execute", str(run_id)]
    torchrun = ["python", "-m", "torch.distributed.run", f"--nproc-per-node={placement.gpus_per_node}"]
    if placement.nodes == 1:
        return [*torchrun, "--standalone", *entry]
    multi_node = [*torchrun, f"--nnodes={placement.nodes}", "--rdzv-backend=c10d",
                  f"--rdzv-endpoint={name}-0.{name}:{rdzv_port(run_id)}", f"--rdzv-id={name}"]
    script = (f'host=0; [ "$JOB_COMPLETION_INDEX" = 0 ] && host=1; '
              f'exec {shlex.join(multi_node)} --rdzv-conf=is_host=$host {shlex.join(entry)}')
    return ["sh", "-c", script]


def security_context() -> dict:
    """A container's share of the "restricted" pod security level."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _volumes(runs_dir: Path, placement: Placement) -> tuple[list[dict], list[dict]]:
    """(volumes, mounts): shared memory for data loading, the runs claim, the dataset read-only."""
    mounts = [{"name": "shm", "mountPath": "/dev/shm"}]
    volumes: list[dict] = [{"name": "shm", "emptyDir": {"medium": "Memory"}}]
    if placement.runs_claim:
        mounts.append({"name": "runs", "mountPath": str(runs_dir)})
        volumes.append({"name": "runs", "persistentVolumeClaim": {"claimName": placement.runs_claim}})
    if placement.data_path:
        source = ({"persistentVolumeClaim": {"claimName": placement.data_claim, "readOnly": True}}
                  if placement.data_claim else data_volume_source(placement.data_volume))
        mounts.append({"name": "data", "mountPath": placement.data_path, "readOnly": True})
        volumes.append({"name": "data", **source})
    return volumes, mounts


def _resources(placement: Placement) -> dict:
    """Requests (so the pods are not BestEffort) and limits; memory's limit is its request."""
    cpu = placement.cpu or str(CPU_PER_GPU * placement.gpus_per_node)
    resources = {"requests": {"cpu": cpu}, "limits": {GPU_RESOURCE: str(placement.gpus_per_node)}}
    if placement.memory:
        resources["requests"]["memory"] = resources["limits"]["memory"] = placement.memory
    return resources


def manifests(run_id: int, runs_dir: Path, placement: Placement, name: str | None = None) -> list[dict]:
    """The headless Service and the indexed Job (both called `name`) that train run `run_id`."""
    name = name or job_name(run_id)
    port = rdzv_port(run_id)
    labels = {"app.kubernetes.io/name": "ddpm-tui", "ddpm-tui/run": str(run_id)}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": placement.namespace, "labels": labels},
        # the pods' DNS records exist as soon as they have addresses, not once they are ready
        "spec": {"clusterIP": "None", "selector": {"job-name": name}, "publishNotReadyAddresses": True,
                 "ports": [{"name": "rendezvous", "port": port, "targetPort": port}]},
    }
    volumes, mounts = _volumes(runs_dir, placement)
    container = {
        "name": CONTAINER,
        "image": placement.image,
        "command": torchrun_command(run_id, placement, name),
        "env": [
            {"name": "DDPM_TUI_DB", "valueFrom": {"secretKeyRef": {"name": placement.store_secret, "key": "url"}}},
            {"name": "DDPM_TUI_RUNS", "value": str(runs_dir)},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": JOB_ENV, "value": name},
        ],
        "ports": [{"containerPort": port, "name": "rendezvous"}],
        "resources": _resources(placement),
        "securityContext": security_context(),
        "volumeMounts": mounts,
    }
    pod = {
        "subdomain": name,
        "restartPolicy": "Never",
        # SIGTERM: the trainer checkpoints, then ends stopped (a user's stop) or waits for the pod that
        # replaces this one (a disruption: core.train.run.disrupted_pod)
        "terminationGracePeriodSeconds": 120,
        "securityContext": {"runAsNonRoot": True, "runAsUser": placement.run_as_user,
                            "runAsGroup": placement.run_as_user, "fsGroup": placement.run_as_user,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if placement.node_selector:
        pod["nodeSelector"] = node_selector(placement.node_selector)
    if placement.tolerations:
        pod["tolerations"] = [toleration(spec) for spec in placement.tolerations]
    if placement.priority_class:
        pod["priorityClassName"] = placement.priority_class
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": placement.namespace, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": placement.nodes,
            "parallelism": placement.nodes,
            "backoffLimit": placement.max_restarts,
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [DISRUPTION]}]},
            "podReplacementPolicy": "Failed",  # never two pod 0s: a replacement waits for the old pod's end
            "ttlSecondsAfterFinished": placement.ttl_s,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return [service, job]


def owned_by(service: dict, job: dict) -> dict:
    """`service` owned by the created `job` (its uid known), so deleting the job deletes it too."""
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
             "uid": job["metadata"]["uid"], "blockOwnerDeletion": False}
    return {**service, "metadata": {**service["metadata"], "ownerReferences": [owner]}}


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
        """Create the job, then its rendezvous Service owned by it (so the Service goes with the job,
        whoever deletes it: a user, a stop, its TTL); a job whose Service cannot be made is deleted."""
        service, job = items
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        created = self._call("creating the job", self.batch.create_namespaced_job, namespace, job)
        job = {**job, "metadata": {**job["metadata"], "uid": created.metadata.uid}}
        try:
            self._call("creating the rendezvous service", self.core.create_namespaced_service, namespace,
                       owned_by(service, job))
        except WorkFailed:
            self.delete(namespace, name, grace_s=0)
            raise

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

    def save_logs(self, namespace: str, name: str, into: Path) -> list[Path]:
        """Write the whole log of every pod of job `name` to `into`/POD.log (before the job and its
        logs are deleted); the files written. A pod with no log yet (still pulling its image) is skipped."""
        from kubernetes.client.exceptions import ApiException

        pods = self._call("listing the run's pods", self.core.list_namespaced_pod, namespace,
                          label_selector=f"job-name={name}")
        saved = []
        for pod in pods.items:
            try:
                text = self.core.read_namespaced_pod_log(pod.metadata.name, namespace, container=CONTAINER)
            except ApiException:
                continue
            into.mkdir(parents=True, exist_ok=True)
            path = into / f"{pod.metadata.name}.log"
            path.write_text(text)
            saved.append(path)
        return saved

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
