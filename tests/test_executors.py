"""Executors as one protocol: a registry keyed by a run's `executor` column, each executor able to
submit, tell the state of, read, stop and kill a run, and no caller asking which executor a run has."""

import re
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import BadInput
from core.executors import CLUSTER_EXECUTORS, EXECUTORS, REGISTRY, check_executor, executor_class, executor_for, job_state
from core.executors.base import NOT_SUBMITTED, USER_SUBMITS
from core.executors.k8s import KubernetesJob, Placement, placement_of
from core.runner.processes import process_start_time

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ("submit", "status", "logs", "stop", "kill")


def test_every_executor_is_registered_under_its_name_and_implements_the_protocol():
    assert EXECUTORS == ("local", "torchrun", "k8s", "slurm")
    assert CLUSTER_EXECUTORS == ("k8s", "slurm")
    for name, registered in REGISTRY.items():
        executor = executor_class(name)
        assert executor.name == name and executor.on_cluster == registered.on_cluster
        assert all(callable(getattr(executor, method, None)) for method in PROTOCOL), name
        assert executor_for(SimpleNamespace(executor=name)).name == name


def test_an_unknown_executor_is_one_line_naming_the_choices():
    with pytest.raises(BadInput, match=r"--executor: unknown executor 'ray' \(choose from local, torchrun, k8s, slurm\)"):
        check_executor("ray")


@pytest.mark.parametrize("path", ["core/runner/lifecycle.py", "core/executors/__init__.py", "core/runner/liveness.py"])
def test_no_caller_branches_on_an_executors_name(path):
    source = (ROOT / path).read_text()
    assert not re.search(r"""executor\s*(==|!=|in)\s*\(?["'](local|torchrun|k8s|slurm)["']""", source), path


def run_of(tmp_path, **fields):
    values = dict(id=7, executor="local", host=socket.gethostname(), pid=None, pgid=None, pid_started=None,
                  started_at=time.time(), step=0, run_dir=str(tmp_path), external_id=None, executor_spec=None)
    return SimpleNamespace(**{**values, **fields})


def test_a_local_run_is_running_only_while_its_recorded_process_lives(tmp_path):
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        started = process_start_time(proc.pid)
        assert job_state(run_of(tmp_path, pid=proc.pid, pgid=proc.pid, pid_started=started)) == "running"
        later_process = run_of(tmp_path, pid=proc.pid, pgid=proc.pid, pid_started=started - 100)
        assert job_state(later_process) == "gone"
        assert not executor_for(later_process).kill(later_process) and proc.poll() is None
        elsewhere = run_of(tmp_path, pid=proc.pid, pgid=proc.pid, pid_started=started, host="gpu-box-b")
        assert not executor_for(elsewhere).stop(elsewhere) and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    (tmp_path / "train.log").write_text("one\ntwo\nthree\n")
    assert executor_for(run_of(tmp_path)).logs(run_of(tmp_path), 2) == "two\nthree"


class RecordingCluster:
    """The part of core.executors.k8s_client.Cluster the executor uses, recording each call."""

    def __init__(self, state="running"):
        self.calls, self.state = [], state

    def submit(self, items):
        self.calls.append(("submit", items[1]["metadata"]["name"]))

    def status(self, namespace, name):
        return self.state

    def save_logs(self, namespace, name, into):
        self.calls.append(("save_logs", name, into))

    def delete(self, namespace, name, grace_s=None):
        self.calls.append(("delete", name, grace_s))
        return True


def k8s_run(tmp_path, **fields):
    (tmp_path / "7").mkdir(exist_ok=True)
    spec = {"image": "img", "namespace": "lab", **fields.pop("spec", {})}
    return run_of(tmp_path / "7", **{"executor": "k8s", "external_id": "lab/ddpm-tui-run-7", "executor_spec": spec,
                                     **fields})


def test_a_kubernetes_job_keeps_its_pods_logs_whoever_ends_it(tmp_path):
    cluster = RecordingCluster()
    run = k8s_run(tmp_path)
    KubernetesJob(cluster).stop(run)
    KubernetesJob(cluster).kill(run)
    pods = tmp_path / "7" / "pods"
    assert cluster.calls == [("save_logs", "ddpm-tui-run-7", pods), ("delete", "ddpm-tui-run-7", None),
                             ("save_logs", "ddpm-tui-run-7", pods), ("delete", "ddpm-tui-run-7", 0)]

    cluster.calls.clear()
    submitted = KubernetesJob(cluster).submit(run, {})  # a resume: the earlier job goes first, logs kept
    assert cluster.calls[:2] == [("save_logs", "ddpm-tui-run-7", pods), ("delete", "ddpm-tui-run-7", None)]
    new_name = cluster.calls[2][1]
    assert re.fullmatch(r"ddpm-tui-run-7-[0-9a-f]{6}", new_name) and submitted.external_id == f"lab/{new_name}"
    first = KubernetesJob(cluster).submit(k8s_run(tmp_path, external_id=None), {})
    assert first.external_id == "lab/ddpm-tui-run-7"


def test_a_dry_runs_job_that_was_never_applied_is_not_submitted_rather_than_gone(tmp_path):
    gone = RecordingCluster(state="gone")
    reserved = k8s_run(tmp_path, spec={USER_SUBMITS: True}, started_at=None)
    assert KubernetesJob(gone).status(reserved) == NOT_SUBMITTED
    assert KubernetesJob(gone).status(k8s_run(tmp_path, started_at=None)) == "gone", "submitted by us: gone"
    trained = k8s_run(tmp_path, spec={USER_SUBMITS: True}, started_at=None, step=40)  # applied, trained, preempted
    assert KubernetesJob(gone).status(trained) == "gone"
    assert KubernetesJob(RecordingCluster("failed")).status(reserved) == "failed"
    external_id, items = KubernetesJob.reserve(reserved)
    assert external_id == "lab/ddpm-tui-run-7" and [i["kind"] for i in items] == ["Service", "Job"]
    assert placement_of(reserved) == Placement(image="img", namespace="lab"), "the mark is not a placement field"
