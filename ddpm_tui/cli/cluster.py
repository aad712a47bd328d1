"""`launch`: a detached run on this machine, or a job on a Kubernetes or SLURM cluster."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ddpm_tui.cli.render import echo_json
from ddpm_tui.options import Where, global_options, train_options


@train_options
@global_options
def launch(
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of training options")] = None,
    queue: Annotated[bool, typer.Option("--queue", help="leave it queued for `ddpm-tui worker`")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local (this machine; torchrun when --nproc > 1) | k8s (a Kubernetes Job) | slurm (a SLURM job, through submitit)")] = "local",
    nodes: Annotated[int, typer.Option("--nodes", help="k8s, slurm: nodes, one torchrun each")] = 1,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", help="k8s, slurm: GPUs (training processes) per node")] = 1,
    image: Annotated[Optional[str], typer.Option("--image", help="k8s: container image with ddpm-tui installed")] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="k8s: namespace of the job")] = "default",
    store_secret: Annotated[str, typer.Option("--store-secret", help="k8s: Secret whose key 'url' is the store's URL")] = "ddpm-tui-store",
    runs_claim: Annotated[Optional[str], typer.Option("--runs-claim", help="k8s: PersistentVolumeClaim mounted at the runs directory")] = None,
    data_claim: Annotated[Optional[str], typer.Option("--data-claim", help="k8s: PersistentVolumeClaim holding the dataset, mounted read-only at --data")] = None,
    data_volume: Annotated[Optional[str], typer.Option("--data-volume", help="k8s: hostPath:/PATH or nfs:SERVER:/PATH holding the dataset, mounted read-only at --data")] = None,
    cpu: Annotated[Optional[str], typer.Option("--cpu", help="k8s: CPUs per pod, e.g. 16 or 500m [default: 4 per GPU]")] = None,
    memory: Annotated[Optional[str], typer.Option("--memory", help="k8s: memory per pod (request and limit), e.g. 64Gi [default: from the run's size]")] = None,
    node_selector: Annotated[Optional[list[str]], typer.Option("--node-selector", help="k8s: KEY=VALUE a node must be labelled with (repeatable)")] = None,
    toleration: Annotated[Optional[list[str]], typer.Option("--toleration", help="k8s: KEY[=VALUE][:EFFECT] taint the pods tolerate (repeatable)")] = None,
    priority_class: Annotated[Optional[str], typer.Option("--priority-class", help="k8s: PriorityClass of the pods")] = None,
    max_restarts: Annotated[Optional[int], typer.Option("--max-restarts", help="k8s: failed pods replaced before the job fails (preemptions and node drains do not count) [default: 0]; slurm: requeues after a preemption or time-limit warning [default: 3]")] = None,
    run_as_user: Annotated[int, typer.Option("--run-as-user", help="k8s: non-root user id the pods run as")] = 1000,
    job_ttl: Annotated[int, typer.Option("--job-ttl", help="k8s: seconds a finished job (and its Service) is kept")] = 3 * 24 * 3600,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="k8s: store the run waiting for its job and print the job's manifest (JSON, for kubectl apply -f -) instead of submitting it")] = False,
    partition: Annotated[Optional[str], typer.Option("--partition", help="slurm: partition")] = None,
    time_min: Annotated[int, typer.Option("--time", help="slurm: time limit in minutes")] = 24 * 60,
    cluster: Annotated[str, typer.Option("--cluster", help="slurm: slurm, or local (submitit runs the job on this machine)")] = "slurm",
    account: Annotated[Optional[str], typer.Option("--account", help="slurm: account charged for the job")] = None,
    qos: Annotated[Optional[str], typer.Option("--qos", help="slurm: quality of service")] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option("--cpus-per-task", help="slurm: CPUs per node's task (its torchrun and data loading) [default: the cluster's]")] = None,
    mem_gb: Annotated[Optional[int], typer.Option("--mem", help="slurm: memory per node in GB [default: the cluster's]")] = None,
    constraint: Annotated[Optional[str], typer.Option("--constraint", help="slurm: node features, e.g. a100|h100")] = None,
    train_values: dict = None, where: Where = None,
):
    """Start a training run as a detached background process, or as a job on a Kubernetes or SLURM
    cluster; prints the run id."""
    from core.services.clusters import ClusterOptions

    options = ClusterOptions(nodes, gpus_per_node, image, namespace, store_secret, runs_claim, data_claim, data_volume,
                             cpu, memory, tuple(node_selector or ()), tuple(toleration or ()), priority_class,
                             max_restarts, run_as_user, job_ttl, partition, time_min, cluster, account, qos,
                             cpus_per_task, mem_gb, constraint)
    run, manifest = where.lab().launch_with(executor, train_values, config, queue, options, dry_run)
    if manifest is None:
        typer.echo(str(run.id))
        return
    echo_json(manifest)
    typer.echo(f"dry run: nothing submitted; run {run.id} waits for its job: kubectl apply -f this manifest "
               f"(or release it with `ddpm-tui runs stop {run.id}`)", err=True)
