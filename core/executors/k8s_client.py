"""The Kubernetes API, through the official `kubernetes` client (an optional dependency,
`pip install 'ddpm-tui[k8s]'`, imported only here and only when a cluster is asked): submit a run's
job and Service, read the job's state and its pods' logs, delete it."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import BadInput, WorkFailed

CONTAINER = "trainer"  # the container of a run's pods that trains: its log is the run's


def owned_by(service: dict, job: dict) -> dict:
    """`service` owned by the created `job` (its uid known), so deleting the job deletes it too."""
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
             "uid": job["metadata"]["uid"], "blockOwnerDeletion": False}
    return {**service, "metadata": {**service["metadata"], "ownerReferences": [owner]}}


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
