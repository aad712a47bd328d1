"""Kubernetes: a run as an indexed `batch/v1` Job, one pod per node, each running torchrun, which
meet through c10d rendezvous at pod 0 (found by name through a headless Service).

The manifest is plain data built by pure functions (so `--dry-run` and the offline schema tests see
exactly what is submitted); KubernetesJob, the executor, submits, reads and deletes a run's job
through the API (core.executors.k8s_client), reached only to talk to a cluster. The pods reach the
store through its URL in a Secret, never in the manifest, and write the run directory on a volume
claim mounted where this machine keeps its runs; the dataset is mounted read-only where --data
names it.

The pods meet "restricted" pod security (non-root, no privilege escalation, no capabilities,
the runtime's seccomp profile), ask for CPU and memory (so they are not evicted first, and quotas
admit them), and a pod lost to a disruption (preemption, a node drained) is replaced without
counting against --max-restarts.

Not used: Kubeflow's PyTorchJob. It needs the training operator installed in the cluster and its
schema is a custom resource; an indexed Job with torchrun needs neither and runs on any cluster.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.errors import BadInput, WorkFailed
from core.executors.base import NOT_SUBMITTED, USER_SUBMITS, Submitted, last_lines, local_log_tail
from core.executors.k8s_client import CONTAINER
from core.run_dir import RunDir

# Each run's rendezvous gets its own port: two jobs whose first pods share a node (host networking,
# or a port published on the node) must not collide. The span stays below Linux's ephemeral ports.
RDZV_PORT_BASE = 29400
RDZV_PORT_SPAN = 3000
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
        # replaces this one (a disruption: core.runner.pod.disrupted_pod)
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


def manifest_list(items: list[dict]) -> dict:
    """One document `kubectl apply -f` takes."""
    return {"apiVersion": "v1", "kind": "List", "items": items}


# ---- the executor ------------------------------------------------------------------------------------
class KubernetesJob:
    """A run as an indexed Job (see manifests), submitted and controlled through the API server of
    the current kubeconfig context (core.executors.k8s_client)."""

    name = "k8s"
    on_cluster = True

    def __init__(self, cluster=None):
        self._cluster = cluster

    @property
    def cluster(self):
        if self._cluster is None:
            from core.executors.k8s_client import Cluster

            self._cluster = Cluster()
        return self._cluster

    @staticmethod
    def reserve(run) -> tuple[str, list[dict]]:
        """For a dry run: the run's external id and the manifests of its job, which its user applies."""
        placement = placement_of(run)
        name = job_name(run.id)
        return f"{placement.namespace}/{name}", manifests(run.id, Path(run.run_dir).parent, placement, name)

    def submit(self, run, env: dict) -> Submitted:
        """Submit the run's job and Service (the store's URL reaches the pods through a Secret, not
        `env`). The job of an earlier try (a resume) is deleted first, its pods' logs kept, and the
        new one gets a name of its own."""
        placement = placement_of(run)
        name = job_name(run.id)
        if job_of(run)[1]:
            self.end_job(run)
            name = f"{name}-{secrets.token_hex(3)}"
        self.cluster.submit(manifests(run.id, Path(run.run_dir).parent, placement, name))
        return Submitted(external_id=f"{placement.namespace}/{name}")

    def status(self, run) -> str:
        """The job's state; NOT_SUBMITTED for a dry run's job that its user has not applied yet (no
        such job, and nothing has trained the run), which is not a job that is gone."""
        state = self.cluster.status(*job_of(run))
        never_applied = (run.executor_spec or {}).get(USER_SUBMITS) and run.started_at is None and run.step == 0
        return NOT_SUBMITTED if state == "gone" and never_applied else state

    def logs(self, run, lines: int) -> str:
        """Pod 0's log through the API while the job has pods, else the run's own log or the pods'
        logs saved when its job was deleted (also where no cluster can be asked: another machine, an
        outage)."""
        try:
            return self.cluster.logs(*job_of(run), lines) or kept_log_tail(run, lines)
        except (BadInput, WorkFailed):
            if text := kept_log_tail(run, lines):
                return text
            raise

    def stop(self, run) -> bool:
        return self.end_job(run)

    def kill(self, run) -> bool:
        return self.end_job(run, grace_s=0)

    def end_job(self, run, grace_s: int | None = None) -> bool:
        """Delete the run's job (its pods get SIGTERM, then SIGKILL after `grace_s` or their own grace
        period), saving every pod's log into the run's directory first: deleting the job deletes
        its pods and their logs. False when the job was already gone."""
        namespace, name = job_of(run)
        if run.run_dir:
            self.cluster.save_logs(namespace, name, RunDir(run.run_dir).pod_logs)
        return self.cluster.delete(namespace, name, grace_s=grace_s)


def placement_of(run) -> Placement:
    """The placement stored with a run (without a dry run's mark)."""
    known = {field.name for field in dataclasses.fields(Placement)}
    return Placement(**{key: value for key, value in (run.executor_spec or {}).items() if key in known})


def job_of(run) -> tuple[str, str]:
    """(namespace, job name) of a run on Kubernetes."""
    namespace, _, name = (run.external_id or "").partition("/")
    return namespace, name


def kept_log_tail(run, lines: int) -> str:
    """A run's log as kept on this machine: its own train.log, else its pods' saved logs."""
    return local_log_tail(run.run_dir, lines) or saved_pod_log_tail(run, lines)


def saved_pod_log_tail(run, lines: int) -> str:
    """The tail of the newest saved log of the run's pod 0 (saved by end_job)."""
    _, name = job_of(run)
    if not run.run_dir or not name:
        return ""
    saved = sorted(RunDir(run.run_dir).pod_logs.glob(f"{name}-0-*.log"), key=lambda p: p.stat().st_mtime)
    return "\n".join(last_lines(saved[-1], lines)) if saved else ""
