"""Training: a run in this process (the CLI's `train`), a detached run, a queued grid of runs, a
queue worker."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Callable

from core.loaded_run import LoadedRun
from core.locations import RUNS_ENV
from core.services.session import Session


class TrainingUseCases(Session):
    def plan_run(self, cfg, rdzv_endpoint: str | None = None, on_this_machine: bool = True):
        """A checked run plan (data, placement, run directory) of `cfg`; nothing is stored."""
        from core.runner.run import plan_run
        return plan_run(cfg, self.runs_dir, rdzv_endpoint=rdzv_endpoint, on_this_machine=on_this_machine)

    def start_new_run(self, plan):
        """A new run of `plan`, `running` and owned by this process (to train here)."""
        from core.runner.run import new_run
        return new_run(self.store, self.runs_dir, plan.cfg, plan=plan)

    def resume_here(self, run_id: int | str, checkpoint: int | None = None, rdzv_endpoint: str | None = None):
        """A stopped/crashed run made `running` again, owned by this process (to train here)."""
        from core.errors import BadInput
        from core.runner.ownership import running_fields
        from core.runner.run import check_resumable
        from core.store import queries

        run = check_resumable(self.store, run_id, checkpoint, rdzv_endpoint=rdzv_endpoint)
        if not queries.set_status(self.store, run.id, "running", reason="resumed", expect=(run.status,),
                                  **running_fields()):
            raise BadInput(f"run {run.id} changed while resuming it; try again")
        return run

    def train_here(self, run, on_step: Callable, say: Callable[[str], None],
                   rdzv_endpoint: str | None = None) -> str:
        """Train a run this process owns: in this process, or for several processes under torchrun
        as a child it follows. `say` gets the lines worth showing on the way. Returns the outcome."""
        from core.compilation import compile_cache, compiles
        from core.device import pick_device
        from core.runner.follow import follow_attached
        from core.runner.run import execute_run

        cfg = LoadedRun.of(run).cfg
        if compiles(cfg.compile, pick_device(cfg.device), cfg.deterministic):
            say(f"run {run.id}: torch.compile compiles the U-Net at the first step (about 90 s for the 96 px network "
                f"on an H200; seconds once its kernels are in {compile_cache()}); --compile off trains eagerly")
        if cfg.world_size == 1:
            return execute_run(self.store, run.id, on_step=on_step)
        say(f"run {run.id}: {cfg.world_size} processes x batch {cfg.batch_size} = global batch "
            f"{cfg.global_batch_size} (torchrun; log in {run.run_dir}/stdout.log)")
        if cfg.nnodes > 1:
            say(f"run {run.id}: waiting for {cfg.nnodes - 1} more node(s); on each, with the same store and "
                f"runs directory: {self.other_nodes_command(run, rdzv_endpoint)}")
        return follow_attached(self.store, run, on_step, rdzv_endpoint)

    def final_artifacts(self, run_id: int) -> dict[str, str]:
        """kind -> path of a run's final sample grid and reverse-process GIF."""
        from core.store import queries
        return {a.kind: a.path for a in queries.artifacts(self.store, run_id) if a.kind in ("samples", "gif")}

    def launch(self, cfg, queue: bool = False, sweep_id: int | None = None, plan=None):
        """A run started detached now, or left `queued` for a worker."""
        from core.runner.lifecycle import launch
        return launch(self.store, self.runs_dir, cfg, queue=queue, sweep_id=sweep_id, plan=plan)

    def queue_sweep(self, raw_values: dict, seeds: int, name: str = "", config: Path | None = None,
                    allow_large: bool = False, eval_on_finish: str | None = None, eval_n: int | None = None,
                    eval_nll_timesteps: str = "all"):
        """(sweep, runs, axes) of a checked and queued grid; with `eval_on_finish`, the metrics the
        worker evaluates as each run finishes (checked before anything is stored)."""
        from core.evaluate.planning import plan_eval_on_finish
        from core.runner.lifecycle import plan_sweep, queue_sweep

        plan = plan_sweep(self.runs_dir, raw_values, seeds, config, name, allow_large)
        if eval_on_finish is not None:
            spec = plan_eval_on_finish(self.existing_store, eval_on_finish, eval_n, eval_nll_timesteps,
                                       [p.cfg for p in plan.plans])
            plan = dataclasses.replace(plan, eval_on_finish=spec.spec())
        sweep, runs = queue_sweep(self.store, plan)
        return sweep, runs, plan.axes

    def run_worker(self, slots: int = 1, gpus: str | None = None, poll: float = 1.0, until_empty: bool = False) -> None:
        """Run queued runs in this process, `slots` at a time, until SIGTERM (or, with
        `until_empty`, until nothing is queued or running)."""
        from core.runner.worker import Worker, check_poll, check_slots, parse_gpu_groups

        slots, gpu_list, poll = check_slots(slots), parse_gpu_groups(gpus), check_poll(poll)
        Worker(self.store, slots, gpu_list, poll=poll, until_empty=until_empty).run()

    def start_worker(self, slots: int = 1) -> int:
        """A detached queue worker (`python -m core.runner.worker --until-empty`), so queued runs
        train after the TUI closes."""
        from core.runner.lifecycle import child_env
        from core.runner.processes import spawn_detached

        command = [sys.executable, "-m", "core.runner.worker", "--slots", str(slots), "--until-empty"]
        env = child_env(self.store, {RUNS_ENV: str(Path(self.runs_dir).resolve())})
        proc = spawn_detached(command, Path(self.runs_dir) / "worker.log", env=env)
        return proc.pid
