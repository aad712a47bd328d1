"""The Kubernetes executor: manifests validated offline against Kubernetes' own schemas, and the
official client driven against an API server stubbed at the HTTP boundary (no cluster here)."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
import pytest

from core.store import Store
from core.store import queries

K8S_VERSION = "1.30.0"
TRAIN = ["--data", "demo", "--dim", "16", "--dim-mults", "1,2", "--image-size", "32"]


K8S_VERSIONS = (K8S_VERSION, "1.37.0")
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_violations(pod: dict) -> list[str]:
    """What in a pod spec breaks the "restricted" pod security level (its rules for the fields a
    training pod can set: https://kubernetes.io/docs/concepts/security/pod-security-standards/)."""
    problems = []
    pod_context = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    problems += [f"volume {v['name']}: {kind}" for v in pod.get("volumes", [])
                 for kind in v if kind != "name" and kind not in RESTRICTED_VOLUMES]
    if pod_context.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    for c in pod["containers"]:
        ctx = c.get("securityContext", {})
        if ctx.get("privileged"):
            problems.append(f"{c['name']}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            problems.append(f"{c['name']}: capabilities do not drop ALL")
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{c['name']}: capabilities added")
        if not ctx.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"{c['name']}: runAsNonRoot is not true")
        if ctx.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{c['name']}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{c['name']}: seccompProfile {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{c['name']}: hostPort")
    return problems


def validate_all(manifest: dict) -> None:
    """Every item against Kubernetes' schemas (strict: unknown fields fail), and every pod against
    the restricted pod security level."""
    assert manifest["kind"] == "List"
    for item in manifest["items"]:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(item, version, strict=True)  # raises on any unknown or mistyped field
        if item["kind"] == "Job":
            assert restricted_violations(item["spec"]["template"]["spec"]) == []


def pod_of(manifest: dict) -> dict:
    return manifest["items"][1]["spec"]["template"]["spec"]


def dry_run(cli, postgres_url, *args) -> dict:
    r = cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "registry.example/ddpm-tui:1",
            "--dry-run", *args, *(TRAIN if "--data" not in args else TRAIN[2:]))
    assert r.code == 0, r
    manifest = json.loads(r.out)
    validate_all(manifest)
    return manifest


@pytest.mark.parametrize("nodes", [1, 3])
def test_dry_run_prints_the_manifest_of_a_stored_run_that_applies_as_printed(workdir, cli, postgres_url, nodes):
    r = cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "registry.example/ddpm-tui:1", "--nodes",
            nodes, "--gpus-per-node", 4, "--namespace", "pathology", "--runs-claim", "ddpm-runs", "--dry-run", *TRAIN)
    assert r.code == 0, r
    manifest = json.loads(r.out)
    validate_all(manifest)
    run = queries.list_runs(Store(postgres_url))[0]
    name = f"ddpm-tui-run-{run.id}"
    assert (run.status, run.started_at, run.external_id) == ("running", None, f"pathology/{name}")
    assert f"run {run.id} waits for its job" in r.err and "kubectl apply" in r.err
    service, job = manifest["items"]
    assert (service["kind"], job["kind"]) == ("Service", "Job")
    assert service["metadata"]["name"] == job["metadata"]["name"] == name
    assert job["spec"]["template"]["spec"]["subdomain"] == name
    assert service["spec"]["selector"] == {"job-name": name}
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", nodes, nodes)
    container = spec["template"]["spec"]["containers"][0]
    command = " ".join(container["command"])
    assert "--nproc-per-node=4" in command and command.endswith(f"-m core.runner.execute {run.id}")
    port = 29400 + run.id
    if nodes == 1:
        assert "--standalone" in command
    else:
        assert f"--nnodes={nodes}" in command and f"--rdzv-endpoint={name}-0.{name}:{port}" in command
    assert service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"] == port
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    store_env = next(e for e in container["env"] if e["name"] == "DDPM_TUI_DB")
    assert store_env["valueFrom"]["secretKeyRef"] == {"name": "ddpm-tui-store", "key": "url"}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "runs")
    assert mount["mountPath"] == str((workdir / "runs").resolve())
    assert "postgres" not in r.out, "the store's URL travels in a Secret, not in the manifest"


def rendezvous_config(command: list[str], index: int, tmp_path) -> dict:
    """Run a multi-node pod's command as pod `index` with a `python` that prints its arguments,
    and read torchrun's rendezvous options from them as torchrun itself parses them."""
    import os
    import subprocess

    from torch.distributed.run import _parse_rendezvous_config, get_args_parser

    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    out = subprocess.run(command, env={"PATH": f"{tmp_path}:{os.environ['PATH']}", "JOB_COMPLETION_INDEX": str(index)},
                         capture_output=True, text=True, check=True, timeout=30).stdout.splitlines()
    assert out[:2] == ["-m", "torch.distributed.run"]
    args = get_args_parser().parse_args(out[2:])
    return {"endpoint": args.rdzv_endpoint, **_parse_rendezvous_config(args.rdzv_conf)}


def test_pod_0_is_told_to_host_the_rendezvous_and_its_dns_record_does_not_wait_for_readiness(tmp_path):
    from torch.distributed.elastic.rendezvous import RendezvousParameters

    from core.executors.k8s import Placement, manifests

    service, job = manifests(7, "/runs", Placement("img", nodes=3))
    assert service["spec"]["publishNotReadyAddresses"] is True
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    hosts = []
    for index in range(3):
        conf = rendezvous_config(command, index, tmp_path)
        assert conf["endpoint"] == "ddpm-tui-run-7-0.ddpm-tui-run-7:29407"
        params = RendezvousParameters("c10d", conf.pop("endpoint"), "ddpm-tui-run-7", 3, 3, **conf)
        hosts.append(params.get_as_bool("is_host"))  # what c10d's _create_tcp_store reads
    assert hosts == [True, False, False]


def test_each_run_has_its_own_rendezvous_port_in_a_safe_range():
    from core.executors.k8s import Placement, manifests, rdzv_port

    ports = {rdzv_port(run_id) for run_id in range(1, 3001)}
    assert len(ports) == 3000 and min(ports) >= 1024 and max(ports) < 32768  # below Linux's ephemeral ports
    first, second = (manifests(run_id, "/runs", Placement("img", nodes=2)) for run_id in (1, 2))
    assert first[0]["spec"]["ports"][0]["port"] != second[0]["spec"]["ports"][0]["port"]
    assert ":29401 " in first[1]["spec"]["template"]["spec"]["containers"][0]["command"][-1]


def test_the_dataset_is_mounted_read_only_where_data_names_it(workdir, cli, postgres_url, pcam):
    pod = pod_of(dry_run(cli, postgres_url, "--data", str(pcam), "--data-claim", "pcam-data"))
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data")
    assert mount == {"name": "data", "mountPath": str(pcam), "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "data")
    assert volume["persistentVolumeClaim"] == {"claimName": "pcam-data", "readOnly": True}

    from core.executors.k8s import Placement, manifests

    nfs = Placement("img", data_volume="nfs:files.lab:/export/pcam", data_path="/mnt/pcam").check()
    job = manifests(1, "/runs", nfs)[1]
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert volume["nfs"] == {"server": "files.lab", "path": "/export/pcam", "readOnly": True}
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    # the checker is not blind: an nfs volume is outside the restricted level (a claim is inside it)
    assert restricted_violations(job["spec"]["template"]["spec"]) == ["volume data: nfs"]


def test_pods_ask_for_cpu_and_memory_and_run_restricted(workdir, cli, postgres_url):
    from core.config import build_config
    from core.executors.k8s import default_memory

    pod = pod_of(dry_run(cli, postgres_url, "--gpus-per-node", "2", "--nodes", "2"))
    resources = pod["containers"][0]["resources"]
    memory = default_memory(build_config({"data": "demo", "dim": "16", "dim_mults": "1,2", "image_size": "32"}), 2)
    assert resources["requests"] == {"cpu": "8", "memory": memory} and resources["limits"]["memory"] == memory
    assert int(memory.removesuffix("Mi")) >= 2 * 3 * 1024
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True

    pod = pod_of(dry_run(cli, postgres_url, "--cpu", "500m", "--memory", "24Gi", "--node-selector", "gpu=h100",
                         "--node-selector", "topology.kubernetes.io/zone=eu-1a",
                         "--toleration", "nvidia.com/gpu:NoSchedule", "--toleration", "team=pathology:NoExecute",
                         "--priority-class", "research-low"))
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "24Gi"}
    assert pod["nodeSelector"] == {"gpu": "h100", "topology.kubernetes.io/zone": "eu-1a"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                  {"key": "team", "operator": "Equal", "value": "pathology", "effect": "NoExecute"}]
    assert pod["priorityClassName"] == "research-low"


def test_disruptions_do_not_count_as_failures_and_a_finished_job_is_removed(workdir, cli, postgres_url):
    job = dry_run(cli, postgres_url, "--max-restarts", "3", "--job-ttl", "3600")["items"][1]
    spec = job["spec"]
    assert spec["backoffLimit"] == 3 and spec["ttlSecondsAfterFinished"] == 3600
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    assert spec["podReplacementPolicy"] == "Failed" and spec["template"]["spec"]["restartPolicy"] == "Never"


def test_a_mistyped_manifest_fails_the_schema_check():
    from core.executors.k8s import Placement, manifests

    service, job = manifests(1, "/runs", Placement("img"))
    job["spec"]["completions"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


@pytest.mark.parametrize("args, message", [
    (["--executor", "slurmish"], "--executor: unknown executor 'slurmish' (choose from local, torchrun, k8s, slurm)"),
    (["--executor", "k8s", "--dry-run"], "--executor k8s needs --image IMAGE"),
    (["--executor", "k8s", "--image", "i", "--namespace", "Bad_NS", "--dry-run"], "--namespace: 'Bad_NS' is not a Kubernetes name"),
    (["--executor", "k8s", "--image", "i", "--nodes", "0", "--dry-run"], "--nodes: must be between 1 and 2147483647, got 0"),
    (["--executor", "k8s", "--image", "i", "--nproc", "2", "--dry-run"], "use --gpus-per-node and --nodes, not --nproc"),
    (["--executor", "k8s", "--image", "i"], "the cluster's nodes must reach the store: use a PostgreSQL --db"),
    (["--dry-run"], "--dry-run goes with --executor k8s"),
])
def test_bad_executor_options_are_one_line_exit_2_and_store_nothing(workdir, cli, args, message):
    r = cli("launch", *args, *TRAIN)
    assert r.code == 2 and message in r.err and r.err.count("\n") == 1, r
    assert not (workdir / "runs.db").exists()


# ---- the API server, stubbed at the HTTP boundary ------------------------------------------------------
class FakeApiServer:
    """Enough of the Kubernetes API for the executor: namespaces, services, jobs, pods and logs.
    Every request is recorded as (method, path, query, body)."""

    def __init__(self, namespaces=("default",)):
        self.namespaces, self.requests, self.jobs = set(namespaces), [], {}
        self.job_status = {"active": 1}
        self.refuse_services = False
        self.on_delete = lambda job: None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                server.requests.append((self.command, url.path, parse_qs(url.query), body))
                code, reply = server.route(self.command, url.path, body)
                if isinstance(reply, str):
                    data = reply.encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._reply(code, reply)

            do_GET = do_POST = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def not_found(what):
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                     "message": f"{what} not found", "code": 404}

    def route(self, method, path, body):
        ok = {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)", path):
            if m[1] in self.namespaces:
                return 200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": m[1]}}
            return self.not_found(f'namespaces "{m[1]}"')
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/services", path) and method == "POST":
            if self.refuse_services:
                return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                             "message": "services is forbidden", "code": 403}
            return 201, body
        if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", path):
            uid = f"uid-{len(self.jobs)}-{body['metadata']['name']}"
            created = {**body, "metadata": {**body["metadata"], "uid": uid}}
            self.jobs[body["metadata"]["name"]] = created
            return 201, created
        if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)(/status)?", path):
            if m[2] not in self.jobs:
                return self.not_found(f'jobs.batch "{m[2]}"')
            if method == "DELETE":
                self.on_delete(m[2])
                del self.jobs[m[2]]
                return 200, ok
            return 200, {**self.jobs[m[2]], "status": self.job_status}
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/services/([^/]+)", path):
            return 200, {"kind": "Service", "apiVersion": "v1", "metadata": {"name": m[2], "namespace": m[1]}}
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", path):
            pods = [{"metadata": {"name": f"{name}-0-abcde", "namespace": m[1], "annotations": {
                "batch.kubernetes.io/job-completion-index": "0"}}} for name in self.jobs]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods}
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log", path):
            return 200, "starting run 1\nstep 10/100 loss 0.5000 900.0 img/s eta 5s\n"
        return self.not_found(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def api_server(tmp_path, monkeypatch):
    server = FakeApiServer(namespaces=("default", "pathology"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": server.url}}],
        "users": [{"name": "me", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "me"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    yield server
    server.close()


def submitted(server, kind):
    return [body for method, path, _, body in server.requests if method == "POST" and path.endswith(kind)]


def test_a_run_submitted_to_kubernetes_is_stopped_killed_and_read_through_the_api(workdir, cli, api_server,
                                                                                  postgres_url):
    launch = ["launch", "--executor", "k8s", "--image", "registry.example/ddpm-tui:1", "--nodes", 2,
              "--gpus-per-node", 2, "--namespace", "pathology", *TRAIN]
    r = cli("--db", postgres_url, *launch)
    assert r.code == 0, r
    run_id = int(r.out)
    jobs = submitted(api_server, "/jobs")
    assert len(jobs) == 1 and len(submitted(api_server, "/services")) == 1
    validate_all({"kind": "List", "items": [*submitted(api_server, "/services"), *jobs]})
    assert jobs[0]["metadata"]["name"] == f"ddpm-tui-run-{run_id}"
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"][-1].endswith(f"execute {run_id}")
    assert "postgres" not in json.dumps(jobs[0]), "the store's URL travels in a Secret, not in the manifest"

    store = Store(postgres_url)
    run = queries.get_run(store, run_id)
    assert (run.executor, run.external_id, run.status) == ("k8s", f"pathology/ddpm-tui-run-{run_id}", "running")
    assert (run.config["nproc"], run.config["nnodes"]) == (2, 2)
    listed = json.loads(cli("--db", postgres_url, "runs", "list", "--json").out)
    assert [x["status"] for x in listed] == ["running"], "a run waiting for its pods is not crashed"
    r = cli("--db", postgres_url, "runs", "show", run_id)
    assert "global_batch: 256" in r.out and f"external_id: pathology/ddpm-tui-run-{run_id}" in r.out
    assert "job_state: running" in r.out

    r = cli("--db", postgres_url, "runs", "logs", run_id, "--tail", 5)
    assert r.code == 0 and "step 10/100 loss 0.5000" in r.out
    log_reads = [q for method, path, q, _ in api_server.requests if path.endswith("/log")]
    assert log_reads and log_reads[-1]["container"] == ["trainer"] and log_reads[-1]["tailLines"] == ["5"]

    r = cli("--db", postgres_url, "runs", "stop", run_id)
    assert r.code == 0 and "stopped before its job started" in r.err, r
    deletes = [(path, body) for method, path, _, body in api_server.requests if method == "DELETE"]
    assert deletes[0][0].endswith(f"/jobs/ddpm-tui-run-{run_id}")
    assert deletes[0][1]["propagationPolicy"] == "Foreground" and deletes[0][1].get("gracePeriodSeconds") is None
    assert queries.get_run(store, run_id).status == "stopped"

    r = cli("--db", postgres_url, "runs", "resume", run_id)
    assert r.code == 0, r
    resumed = queries.get_run(store, run_id)
    assert resumed.status == "running" and resumed.started_at is None
    new_name = resumed.external_id.split("/")[1]
    assert re.fullmatch(rf"ddpm-tui-run-{run_id}-[0-9a-f]{{6}}", new_name)
    again = submitted(api_server, "/jobs")[-1]
    assert again["metadata"]["name"] == new_name and again["spec"]["completions"] == 2
    assert again["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/ddpm-tui:1"
    validate_all({"kind": "List", "items": [again]})
    assert cli("--db", postgres_url, "runs", "stop", run_id).code == 0

    second = int(cli("--db", postgres_url, *launch).out)
    assert cli("--db", postgres_url, "runs", "kill", second).code == 0
    last_delete = [body for method, path, _, body in api_server.requests
                   if method == "DELETE" and path.endswith(f"/jobs/ddpm-tui-run-{second}")][-1]
    assert last_delete["gracePeriodSeconds"] == 0
    assert queries.get_run(store, second).status == "killed"


def test_a_namespace_the_cluster_lacks_is_one_line_and_stores_nothing(workdir, cli, api_server, postgres_url):
    r = cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "img", "--namespace", "nosuch", *TRAIN)
    assert r.code == 2 and r.err.strip() == "error: --namespace nosuch: no such namespace in the cluster", r
    assert queries.list_runs(Store(postgres_url)) == [] and not submitted(api_server, "/jobs")
    assert not any((workdir / "runs").glob("*"))


def test_a_job_that_fails_before_its_trainer_starts_ends_the_run_failed(workdir, cli, api_server, postgres_url):
    run_id = int(cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "no/such:image", *TRAIN).out)
    api_server.job_status = {"failed": 1}  # e.g. the image cannot be pulled
    shown = json.loads(cli("--db", postgres_url, "runs", "show", run_id, "--json").out)
    assert shown["job_state"] == "failed" and shown["status"] == "failed"
    assert shown["exit_reason"] == f"job default/ddpm-tui-run-{run_id} failed before training started"


def test_the_service_is_owned_by_its_job_and_a_stop_keeps_every_pods_log(workdir, cli, api_server, postgres_url):
    run_id = int(cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "img", "--nodes", 2, *TRAIN).out)
    name = f"ddpm-tui-run-{run_id}"
    posts = [path for method, path, _, _ in api_server.requests if method == "POST"]
    assert posts[0].endswith("/jobs") and posts[1].endswith("/services"), "the job first: the Service needs its uid"
    service = submitted(api_server, "/services")[0]
    assert service["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                                       "uid": api_server.jobs[name]["metadata"]["uid"],
                                                       "blockOwnerDeletion": False}]
    validate_all({"kind": "List", "items": [service]})

    assert cli("--db", postgres_url, "runs", "stop", run_id).code == 0
    calls = [(method, path) for method, path, _, _ in api_server.requests]
    log_read = calls.index(("GET", f"/api/v1/namespaces/default/pods/{name}-0-abcde/log"))
    assert log_read < calls.index(("DELETE", f"/apis/batch/v1/namespaces/default/jobs/{name}"))
    saved = workdir / "runs" / str(run_id) / "pods" / f"{name}-0-abcde.log"
    assert saved.read_text() == "starting run 1\nstep 10/100 loss 0.5000 900.0 img/s eta 5s\n"

    assert name not in api_server.jobs  # the job and its pods (so their logs) are gone from the cluster
    r = cli("--db", postgres_url, "runs", "logs", run_id, "--tail", 1)
    assert r.code == 0 and r.out.strip() == "step 10/100 loss 0.5000 900.0 img/s eta 5s", r
    api_server.close()  # and where no cluster can be asked
    r = cli("--db", postgres_url, "runs", "logs", run_id, "--tail", 1)
    assert r.code == 0 and r.out.strip() == "step 10/100 loss 0.5000 900.0 img/s eta 5s", r


def test_a_job_whose_service_cannot_be_made_is_deleted_and_nothing_is_stored(workdir, cli, api_server, postgres_url):
    api_server.refuse_services = True
    r = cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "img", *TRAIN)
    assert r.code == 1 and "creating the rendezvous service: 403" in r.err, r
    assert api_server.jobs == {} and queries.list_runs(Store(postgres_url)) == []


def test_a_pod_lost_to_a_disruption_is_replaced_and_the_run_continues_from_its_checkpoint(workdir, cli, pcam,
                                                                                         postgres_url):
    """The pods of a job, played by processes given its environment: a SIGTERM with no stop requested
    (a preemption) leaves the run for the replacement pod, which continues it; a failed pod's
    replacement (--max-restarts) continues it too; a user's stop still ends it stopped."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import TINY, poll_until, wait_for_checkpoint
    from core.runner.heartbeat import STOP_REQUESTED

    r = cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "img", "--dry-run", "--data", str(pcam),
            *TINY, "--max-steps", "100000", "--ckpt-every", "5")
    assert r.code == 0, r
    store = Store(postgres_url)
    run = queries.list_runs(store)[0]
    env = {**os.environ, "DDPM_TUI_DB": postgres_url, "DDPM_TUI_K8S_JOB": f"ddpm-tui-run-{run.id}"}
    ckpts = workdir / "runs" / str(run.id) / "checkpoints"

    def pod():
        return subprocess.Popen([sys.executable, "-m", "core.runner.execute", str(run.id)], env=env, cwd=workdir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def resumed_in(pod_process, times):
        """Whether `pod_process` took the run over and resumed it (the `times`th resume)."""
        current = queries.get_run(store, run.id)
        log = (workdir / "runs" / str(run.id) / "train.log").read_text()
        return current.status == "running" and current.pid == pod_process.pid and \
            log.count(f"resuming run {run.id} from ckpt-") == times

    pods = []
    try:
        pods.append(first := pod())
        wait_for_checkpoint(first, ckpts / "ckpt-00000005.pt")
        os.killpg(first.pid, signal.SIGTERM)  # preempted: nobody asked for a stop
        assert first.wait(timeout=120) == 1, "the disrupted pod fails, so its job replaces it"
        left = queries.get_run(store, run.id)
        assert (left.status, left.started_at) == ("running", None) and left.step >= 5
        assert f"preempted at step {left.step}" in queries.status_events(store, run.id)[-1].reason

        pods.append(second := pod())
        poll_until(lambda: resumed_in(second, 1), timeout=120)
        queries.set_status(store, run.id, "failed", reason="CUDA error: an illegal memory access")  # a crash
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(timeout=30)

        pods.append(third := pod())
        poll_until(lambda: resumed_in(third, 2), timeout=120)
        queries.update_run(store, run.id, exit_reason=STOP_REQUESTED)  # what `runs stop` stamps first
        os.killpg(third.pid, signal.SIGTERM)
        assert third.wait(timeout=120) == 0, third.stderr.read()
    finally:
        for p in pods:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert queries.get_run(store, run.id).status == "stopped"
    log = (workdir / "runs" / str(run.id) / "train.log").read_text()
    assert log.count(f"resuming run {run.id} from ckpt-") == 2 and log.count(f"starting run {run.id}") == 1


@pytest.mark.parametrize("verb, request_", [("stop", "stop requested"), ("kill", "kill requested")])
def test_a_users_stop_is_stamped_in_the_store_before_the_job_is_deleted(workdir, cli, api_server, postgres_url,
                                                                         verb, request_):
    """So the trainer, given SIGTERM, ends the run as asked instead of waiting for a replacement pod."""
    import time

    run_id = int(cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "img", *TRAIN).out)
    store = Store(postgres_url)
    queries.update_run(store, run_id, started_at=time.time())  # its trainer took it over
    seen = []
    api_server.on_delete = lambda job: seen.append(queries.get_run(store, run_id).exit_reason)
    assert cli("--db", postgres_url, "runs", verb, run_id).code == 0
    assert seen == [request_]


def test_resume_keeps_every_pods_log_of_the_job_it_replaces(workdir, cli, api_server, postgres_url):
    """The old job goes when a run is resumed, and its pods' logs with it: they are saved first."""
    run_id = int(cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "img", *TRAIN).out)
    name = f"ddpm-tui-run-{run_id}"
    store = Store(postgres_url)
    queries.set_status(store, run_id, "failed", reason="CUDA error: an illegal memory access")  # the job keeps its pod

    r = cli("--db", postgres_url, "runs", "resume", run_id)
    assert r.code == 0, r
    calls = [(method, path) for method, path, _, _ in api_server.requests]
    log_read = calls.index(("GET", f"/api/v1/namespaces/default/pods/{name}-0-abcde/log"))
    assert log_read < calls.index(("DELETE", f"/apis/batch/v1/namespaces/default/jobs/{name}"))
    saved = workdir / "runs" / str(run_id) / "pods" / f"{name}-0-abcde.log"
    assert saved.read_text() == "starting run 1\nstep 10/100 loss 0.5000 900.0 img/s eta 5s\n"
    assert queries.get_run(store, run_id).external_id != f"default/{name}"


def test_a_dry_run_waits_for_its_job_until_it_is_applied_instead_of_failing(workdir, cli, api_server, postgres_url):
    """Between `launch --dry-run` and `kubectl apply` the cluster has no such job: not yet
    submitted, which is not a job that is gone."""
    r = cli("--db", postgres_url, "launch", "--executor", "k8s", "--image", "img", "--dry-run", *TRAIN)
    assert r.code == 0, r
    store = Store(postgres_url)
    run = queries.list_runs(store)[0]
    name = f"ddpm-tui-run-{run.id}"
    for _ in range(2):  # a second look changes nothing either
        shown = json.loads(cli("--db", postgres_url, "runs", "show", run.id, "--json").out)
        assert (shown["status"], shown["job_state"]) == ("running", "not submitted"), shown
    assert [e.status for e in queries.status_events(store, run.id)] == ["running"]

    api_server.jobs[name] = json.loads(r.out)["items"][1]  # kubectl apply -f
    shown = json.loads(cli("--db", postgres_url, "runs", "show", run.id, "--json").out)
    assert (shown["status"], shown["job_state"]) == ("running", "running"), shown
    api_server.job_status = {"failed": 1}  # applied, then failed before its trainer started: that is failed
    shown = json.loads(cli("--db", postgres_url, "runs", "show", run.id, "--json").out)
    assert (shown["status"], shown["job_state"]) == ("failed", "failed"), shown
