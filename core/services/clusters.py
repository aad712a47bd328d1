"""Launching a run as a job on a Kubernetes or SLURM cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput
from core.services.training import TrainingUseCases


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how a cluster runs the job: `nodes` x `gpus_per_node` training processes, and each
    executor's own settings (k8s: a Placement, slurm: an Allocation)."""

    nodes: int = 1
    gpus_per_node: int = 1
    # k8s
    image: str | None = None
    namespace: str = "default"
    store_secret: str = "ddpm-tui-store"
    runs_claim: str | None = None
    data_claim: str | None = None
    data_volume: str | None = None
    cpu: str | None = None
    memory: str | None = None
    node_selector: tuple[str, ...] = ()
    tolerations: tuple[str, ...] = ()
    priority_class: str | None = None
    max_restarts: int | None = None  # k8s default 0, slurm default 3
    run_as_user: int = 1000
    job_ttl: int = 3 * 24 * 3600
    # slurm
    partition: str | None = None
    time_min: int = 24 * 60
    cluster: str = "slurm"
    account: str | None = None
    qos: str | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    constraint: str | None = None


class ClusterUseCases(TrainingUseCases):
    def launch_with(self, executor: str, train_values: dict, config: Path | None, queue: bool = False,
                    options: ClusterOptions = ClusterOptions(), dry_run: bool = False):
        """The `launch` command's run: detached on this machine (or queued for a worker), or a job
        on `executor`'s cluster. Returns (run, manifest) as launch_on_cluster does."""
        from core.config import build_config
        from core.executors import CLUSTER_EXECUTORS, check_executor

        if dry_run and executor != "k8s":
            raise BadInput("--dry-run goes with --executor k8s")
        if check_executor(executor) in CLUSTER_EXECUTORS:
            if queue:
                raise BadInput(f"--queue: a run for --executor {executor} is queued by its cluster, not by a worker")
            return self.launch_on_cluster(executor, train_values, config, options, dry_run)
        plan = self.plan_run(build_config(train_values, config))
        return self.launch(plan.cfg, queue=queue, plan=plan), None

    def launch_on_cluster(self, executor: str, train_values: dict, config: Path | None, options: ClusterOptions,
                          dry_run: bool = False):
        """Check and submit a run to `executor`'s cluster; returns (run, manifest): the manifest
        (kubectl's JSON list) only for a k8s dry run, which stores the run waiting for its job
        and submits nothing."""
        from core.config import build_config

        for name in ("nproc", "nnodes"):
            if train_values.get(name) is not None:
                raise BadInput(f"--executor {executor}: use --gpus-per-node and --nodes, not --{name}")
        if executor == "k8s":
            from core.executors.k8s import Placement

            o = options
            spec = Placement(o.image or "", o.nodes, o.gpus_per_node, o.namespace, o.store_secret, o.runs_claim,
                             o.data_claim, o.data_volume, cpu=o.cpu, memory=o.memory, node_selector=o.node_selector,
                             tolerations=o.tolerations, priority_class=o.priority_class,
                             max_restarts=0 if o.max_restarts is None else o.max_restarts, run_as_user=o.run_as_user,
                             ttl_s=o.job_ttl).check()
        else:
            from core.executors.slurm import Allocation

            o = options
            spec = Allocation(o.nodes, o.gpus_per_node, o.partition, o.time_min, o.cluster,
                              3 if o.max_restarts is None else o.max_restarts, o.account, o.qos, o.cpus_per_task,
                              o.mem_gb, o.constraint).check()
        cfg = build_config({**train_values, "nproc": str(options.gpus_per_node), "nnodes": str(options.nodes)}, config)
        if executor == "k8s":
            return self._launch_on_kubernetes(cfg, spec, dry_run)
        return self._launch_on_slurm(cfg, spec), None

    def _shared_store_only(self, executor: str) -> None:
        from core.store.db import sqlite_path

        if sqlite_path(self.db_url) is not None:
            raise BadInput(f"--executor {executor}: the cluster's nodes must reach the store: use a PostgreSQL --db "
                           "(an SQLite file cannot be shared between hosts)")

    def _launch_on_kubernetes(self, cfg, placement, dry_run: bool):
        from core.executors import cluster_client
        from core.executors.k8s import manifest_list
        from core.runner.lifecycle import reserve_on_cluster, submit_to_cluster
        from core.runner.run import plan_run

        placement = placement.fitted(cfg)
        self._shared_store_only("k8s")
        cluster = None if dry_run else cluster_client()
        plan = plan_run(cfg, self.runs_dir, on_this_machine=False)
        if dry_run:
            run, items = reserve_on_cluster(self.store, plan, placement)
            return run, manifest_list(items)
        return submit_to_cluster(self.store, plan, placement, cluster), None

    def _launch_on_slurm(self, cfg, allocation):
        from core.runner.lifecycle import submit_to_slurm
        from core.runner.run import plan_run

        if allocation.cluster == "slurm":
            self._shared_store_only("slurm")
        plan = plan_run(cfg, self.runs_dir, on_this_machine=allocation.cluster == "local")
        return submit_to_slurm(self.store, plan, allocation)
