"""The application service under both faces: what the TUI and the CLI's interactive commands may
do to the store and the runs, in one place. Every call does I/O (a face runs it in a worker thread);
errors are core.errors types, never to be parsed from their text."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping
from pathlib import Path

from core.errors import BadInput, WorkFailed
from core.executors import CLUSTER_EXECUTORS, log_tail
from core.locations import RUNS_ENV
from core.runner.liveness import reconcile
from core.store import Store, queries


@dataclass(frozen=True)
class RunView:
    """A run as the faces show it: its row, its latest metric summaries and its tags, read-only."""

    id: int
    name: str
    status: str
    step: int
    total_steps: int
    loss: float | None
    smooth_loss: float | None
    best: float | None  # lowest validation loss (else lowest smoothed training loss)
    val_loss: float | None
    img_per_s: float | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    heartbeat_at: float | None
    host: str | None
    pid: int | None
    exit_reason: str | None
    sweep_id: int | None
    parent_id: int | None
    executor: str
    external_id: str | None  # the cluster's name for the run (Kubernetes job, SLURM job id)
    global_batch: int  # images per optimizer step over all of the run's processes
    run_dir: str | None
    checkpoint_path: str | None
    tags: tuple[str, ...]
    config: Mapping[str, Any]

    @property
    def on_cluster(self) -> bool:
        """Trained by a cluster's job (Kubernetes, SLURM) rather than processes of this machine."""
        return self.executor in CLUSTER_EXECUTORS

    @property
    def writing_samples(self) -> bool:
        """Running past its last step: the trainer writes the final sample grid, its reverse-process
        GIF and the last checkpoint (a minute or more) before it records the run's end."""
        return self.status == "running" and 0 < self.total_steps <= self.step

    @classmethod
    def of(cls, record: dict) -> "RunView":
        """From core.store.queries.run_record."""
        return cls(**{**record, "tags": tuple(record["tags"]), "config": MappingProxyType(dict(record["config"]))})


@dataclass(frozen=True)
class SweepView:
    id: int
    name: str
    spec: Mapping[str, Any]  # axes, seeds, eval_on_finish


@dataclass(frozen=True)
class EvaluationView:
    """One stored evaluation of one metric: its value, 95% CI and how it was made."""

    id: int
    run_id: int
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    split: str
    seed: int
    checkpoint_step: int | None
    sampler: str | None
    steps: int | None
    guidance: float | None
    classifier_id: int | None
    created_at: float
    details: Mapping[str, Any]

    @classmethod
    def of(cls, record: dict) -> "EvaluationView":
        """From core.store.queries.evaluation_record."""
        return cls(**{**record, "details": MappingProxyType(dict(record["details"]))})


@dataclass(frozen=True)
class BlindTestView:
    id: int
    run_id: int
    mode: str
    n: int
    correct: int
    p_value: float
    answers: Mapping[str, Any]
    created_at: float


@dataclass
class EvaluationJob:
    """A detached evaluation this face started: its process, its runs, its log."""

    process: object  # subprocess.Popen
    run_ids: list[int]
    log: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.process.poll()


class SeriesFollower:
    """One metric series of a run kept up to date for a live chart: the first read takes the
    series evenly thinned, every later read only the points after the last one held; past twice
    `max_points` every other point is dropped, so the series stays evenly thinned. A run that went
    back (resumed from an older checkpoint, its later points deleted) is read again whole."""

    def __init__(self, store_reader, run_id: int, key: str, max_points: int = 2000):
        self.read, self.run_id, self.key, self.max_points = store_reader, run_id, key, max_points
        self.steps: list[int] = []
        self.values: list[float] = []
        self.walls: list[float] = []
        self.lock = threading.Lock()  # a refresh still reading when the next one starts must not interleave

    def update(self, run_step: int) -> tuple[list[int], list[float], list[float]]:
        with self.lock:
            return self._update(run_step)

    def _update(self, run_step: int) -> tuple[list[int], list[float], list[float]]:
        if self.steps and run_step < self.steps[-1]:
            self.steps, self.values, self.walls = [], [], []
        after = self.steps[-1] if self.steps else None
        steps, values, walls = self.read(self.run_id, self.key, self.max_points, after)
        self.steps += steps
        self.values += values
        self.walls += walls
        if len(self.steps) > 2 * self.max_points:
            self.steps, self.values, self.walls = self.steps[::2], self.values[::2], self.walls[::2]
        return list(self.steps), list(self.values), list(self.walls)


@dataclass
class Lab:
    """One store and its runs directory, opened lazily (a TUI paints before it connects)."""

    db_url: str
    runs_dir: Path

    def __post_init__(self):
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db_url)
        return self._store

    def without_secrets(self, message: str) -> str:
        """`message` (an error to show) with the store URL's password and secret parameters hidden."""
        from core.store.db import hide_secrets

        return hide_secrets(message, self.db_url)

    # ---- reads ----------------------------------------------------------------------------------
    def runs(self) -> list[RunView]:
        reconcile(self.store)
        return [RunView.of(r) for r in queries.run_records(self.store)]

    def run(self, run_id: int) -> RunView:
        run = queries.get_run(self.store, run_id)
        return RunView.of(queries.run_record(run, queries.summaries(self.store, [run_id]).get(run_id),
                                             queries.run_tags(self.store, [run_id]).get(run_id)))

    def series(self, run_id: int, key: str, max_points: int = 2000):
        return queries.metric_series(self.store, run_id, key, max_points)

    def cluster_log(self, run_id: int, lines: int = 200) -> str:
        """The end of a cluster run's log as its executor has it (pod 0's, the job's output); a
        cluster that cannot be asked gives a line saying so instead."""
        try:
            return log_tail(queries.get_run(self.store, run_id), lines)
        except (BadInput, WorkFailed) as exc:
            return f"(the cluster's log is not available: {exc})"

    def follow_series(self, run_id: int, key: str, max_points: int = 2000) -> SeriesFollower:
        return SeriesFollower(lambda *args: queries.metric_series(self.store, *args), run_id, key, max_points)

    def metric_keys(self, run_id: int) -> list[str]:
        return queries.metric_keys(self.store, run_id)

    def events(self, run_id: int):
        return queries.status_events(self.store, run_id)

    def sample_grids(self, run_id: int, kind: str = "samples") -> list[tuple[int | None, Path]]:
        """(step, path) of every saved artifact of `kind` of a run that still exists, oldest first
        (samples: PNG grids; gif: reverse-process GIFs)."""
        found = [(a.step, Path(a.path)) for a in queries.artifacts(self.store, run_id, kind)]
        return [(step, path) for step, path in found if path.exists()]

    def latest_samples(self, run_id: int, kind: str = "samples") -> Path | None:
        """The newest existing artifact file of `kind`."""
        grids = self.sample_grids(run_id, kind)
        return grids[-1][1] if grids else None

    def sweeps(self) -> list[SweepView]:
        return [SweepView(s.id, s.name, MappingProxyType(dict(s.spec or {}))) for s in queries.list_sweeps(self.store)]

    # ---- actions --------------------------------------------------------------------------------
    def stop(self, run_id: int):
        from core.runner.lifecycle import stop
        return stop(self.store, run_id)

    def kill(self, run_id: int, grace: float = 10.0):
        from core.runner.lifecycle import kill
        return kill(self.store, run_id, grace=grace)

    def resume(self, run_id: int, queue: bool = False, restart: bool = False):
        from core.runner.lifecycle import resume
        return resume(self.store, run_id, queue=queue, restart=restart)

    def delete(self, run_id: int):
        from core.runner.lifecycle import remove
        return remove(self.store, run_id)

    def tag(self, run_id: int, tags: list[str]) -> None:
        queries.add_tags(self.store, run_id, tags)

    def note(self, run_id: int, text: str) -> None:
        queries.add_note(self.store, run_id, text)

    def notes(self, run_id: int) -> list[tuple[float, str]]:
        """(time, text) of a run's notes, oldest first."""
        return [(n.created_at, n.text) for n in queries.notes(self.store, run_id)]

    def launch(self, cfg, queue: bool = False, sweep_id: int | None = None):
        from core.runner.lifecycle import launch
        return launch(self.store, self.runs_dir, cfg, queue=queue, sweep_id=sweep_id)

    def queue_sweep(self, raw_values: dict, seeds: int, name: str = ""):
        """(sweep, runs, axes) of a checked and queued grid."""
        from core.runner.lifecycle import plan_sweep, queue_sweep
        plan = plan_sweep(self.runs_dir, raw_values, seeds, name=name)
        sweep, runs = queue_sweep(self.store, plan)
        return sweep, runs, plan.axes

    def sample(self, run_id: int, out: Path, n: int = 16, steps: int = 50, checkpoint: int | None = None):
        from core.sample import sample_run
        return sample_run(self.store, run_id, out, n=n, steps=steps, device="auto", checkpoint=checkpoint)

    def checkpoints(self, run_id: int) -> list[tuple[int, int, float]]:
        """(step, bytes, saved at) of each checkpoint file of a run, oldest first."""
        from core.train.checkpoint import checkpoint_step, list_checkpoints

        run = queries.get_run(self.store, run_id)
        found = []
        for path in list_checkpoints(Path(run.run_dir) / "checkpoints") if run.run_dir else []:
            try:
                stat = path.stat()
            except OSError:
                continue  # pruned meanwhile
            found.append((checkpoint_step(path), stat.st_size, stat.st_mtime))
        return found

    def extend(self, run_id: int, more_steps: int):
        from core.runner.lifecycle import extend
        return extend(self.store, run_id, more_steps)

    def start_worker(self, slots: int = 1) -> int:
        """A detached queue worker (`python -m core.runner.worker --until-empty`), so queued runs
        train after the TUI closes."""
        from core.runner.lifecycle import child_env
        from core.runner.processes import spawn_detached

        command = [sys.executable, "-m", "core.runner.worker", "--slots", str(slots), "--until-empty"]
        env = child_env(self.store, {RUNS_ENV: str(Path(self.runs_dir).resolve())})
        proc = spawn_detached(command, Path(self.runs_dir) / "worker.log", env=env)
        return proc.pid

    # ---- evaluation --------------------------------------------------------------------------------
    def evaluations(self, run_id: int) -> list[EvaluationView]:
        """The newest evaluation of each metric of a run."""
        latest = queries.latest_evaluations(self.store, [run_id]).get(run_id, {})
        return [EvaluationView.of(queries.evaluation_record(e)) for e in latest.values()]

    def default_metrics(self, run_id: int) -> str:
        """nll and ssim, and kid/fid (and class where it applies) when a classifier fits the run."""
        from core.config import config_from_dict
        from core.evaluate.service import matching_classifier

        cfg = config_from_dict(queries.get_run(self.store, run_id).config)
        metrics = ["nll", "ssim"]
        if matching_classifier(self.store, cfg) is not None:
            metrics += ["kid", "fid"] + (["class"] if cfg.conditional or cfg.classes != "both" else [])
        return ",".join(metrics)

    def start_evaluation(self, run_ids: list[int], metrics: str | None = None, n: int | None = None,
                         nll_timesteps: str = "all", checkpoint: int | None = None) -> EvaluationJob:
        """Check the request for every run, then evaluate them in a detached process (it outlives
        the TUI, as training does)."""

        from core.evaluate.job import job_command
        from core.evaluate.service import plan_evaluation
        from core.runner.lifecycle import child_env
        from core.runner.processes import spawn_detached

        chosen = metrics or self.default_metrics(run_ids[0])
        for run_id in run_ids:
            plan_evaluation(self.store, run_id, chosen, n, nll_timesteps=nll_timesteps, checkpoint=checkpoint)
        log = Path(self.runs_dir) / "eval-logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-runs-{'-'.join(map(str, run_ids))}.log"
        process = spawn_detached(job_command(run_ids, chosen, n, nll_timesteps, checkpoint), log,
                                 env=child_env(self.store))
        return EvaluationJob(process, list(run_ids), log, time.time())

    def evaluation_outcome(self, job: EvaluationJob) -> tuple[str, bool]:
        """(one line on how an ended evaluation went, whether it succeeded)."""
        rows = [e for run_id in job.run_ids for e in self.evaluations(run_id) if e.created_at >= job.started_at]
        runs = ", ".join(map(str, job.run_ids))
        if job.exit_code() == 0:
            shown = "; ".join(f"run {e.run_id} {e.metric} {e.value:.4g}" for e in rows[:4])
            return f"evaluation of run(s) {runs} done: {shown or 'nothing new stored'}", True
        return f"evaluation of run(s) {runs} failed (exit {job.exit_code()}): see {job.log}", False

    def sweep_ranking(self, sweep_id: int):
        """The sweep's ranking (core.rank.sweep; mixed settings are ranked and flagged), or None
        while nothing of it is evaluated."""
        from core.rank.sweep import rank_sweep

        try:
            return rank_sweep(self.store, sweep_id, mixed=True)
        except BadInput:
            return None

    def sweep_eval_jobs(self, sweep_id: int) -> dict[str, int]:
        """How many of the sweep's queued evaluations are queued, running, finished, failed."""
        ids = [r.id for r in queries.list_runs(self.store, sweep_id=sweep_id)]
        counts: dict[str, int] = {}
        for job in queries.eval_jobs(self.store, ids) if ids else []:
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    def evaluate_sweep_missing(self, sweep_id: int) -> tuple[list[int], int | None]:
        """Start a detached evaluation of the sweep's finished runs that lack its metrics (its
        --eval-on-finish ones, or the defaults); returns (run ids, the job or None)."""
        sweep = queries.get_sweep(self.store, sweep_id)
        spec = (sweep.spec or {}).get("eval_on_finish") or {}
        finished = queries.list_runs(self.store, status="finished", sweep_id=sweep_id)
        if not finished:
            return [], None
        metrics = spec.get("metrics") or self.default_metrics(finished[0].id)
        latest = queries.latest_evaluations(self.store, [r.id for r in finished])
        wanted = [{"ssim": "ssim_memorisation", "class": "class_fidelity"}.get(m, m) for m in metrics.split(",")]
        missing = [r.id for r in finished if any(m not in latest.get(r.id, {}) for m in wanted)]
        if not missing:
            return [], None
        return missing, self.start_evaluation(missing, metrics, spec.get("n"), spec.get("nll_timesteps", "all"))

    # ---- blind test (screens/blind.py) ------------------------------------------------------------
    def blind_tests(self, run_id: int | None = None) -> list[BlindTestView]:
        return [BlindTestView(b.id, b.run_id, b.mode, b.n, b.correct, b.p_value, MappingProxyType(dict(b.answers or {})),
                              b.created_at) for b in queries.blind_tests(self.store, run_id)]

    def add_blind_test(self, run_id: int, mode: str, n: int, correct: int, p_value: float, answers: dict) -> int:
        return queries.add_blind_test(self.store, run_id, mode, n, correct, p_value, answers).id

    def blind_trials(self, run_id: int, mode: str, n: int, seed: int, steps: int = 50) -> tuple[list[str], list]:
        """(the true answers, the images) of a blind test. Class mode: ceil(n/2) generated patches
        of each class, shuffled; the answer is each one's class. Real-vs-generated: n pairs of a
        generated patch and a real one (of the same class for a conditional run), the generated one
        on side a or b at random; the answer is that side."""
        import math

        from core.blind import CLASS_MODE, CLASS_NAMES, class_trials, pair_sides

        if mode == CLASS_MODE:
            per_class = math.ceil(n / 2)
            made = {label: self.blind_generate(run_id, per_class, seed + label, class_label=label, steps=steps)
                    for label in (0, 1)}
            order = class_trials(per_class, seed)
            return [CLASS_NAMES[label] for label, _ in order], [made[label][i] for label, i in order]
        conditional = bool(self.run(run_id).config.get("conditional"))
        generated = self.blind_generate(run_id, n, seed, class_label=None, steps=steps)
        # a conditional net alternates the classes; pair each sample with a real one of its class
        real = self.blind_real(run_id, [i % 2 if conditional else None for i in range(n)], seed)
        truths = pair_sides(n, seed)
        return truths, [(generated[i], real[i]) if side == "a" else (real[i], generated[i])
                        for i, side in enumerate(truths)]

    def blind_generate(self, run_id: int, n: int, seed: int, class_label: int | None = None,
                       steps: int = 50):
        """n generated patches, uint8 (n, S, S, 3), from the run's EMA weights (DDIM, `steps` steps).
        class_label 0/1 needs a conditional run; None alternates the classes of a conditional run."""
        import torch

        from core.inference import load_run_model
        from core.sample import generate

        net, diffusion, cfg, _, run = load_run_model(self.store, run_id, device="auto")
        if class_label is not None and not cfg.conditional:
            raise BadInput(f"run {run.id} is not class-conditional (trained on {cfg.classes}); "
                           "the class test needs a --conditional run")
        with torch.inference_mode():
            return generate(net, diffusion, n, cfg.image_size, "ddim", min(steps, cfg.timesteps), 0.0,
                            class_label, seed, next(net.parameters()).device).images

    def blind_real(self, run_id: int, labels: list[int | None], seed: int):
        """Real test-split patches of the run's dataset, one per entry of `labels` (a PCam label,
        or None for any of the run's classes), prepared as the run saw them (centre crop or resize
        to its image size): uint8 (n, S, S, 3)."""
        import numpy as np

        from core.config import config_from_dict
        from core.data import open_split, resolve_data, selected_indices
        from core.data.transforms import to_model_input, to_uint8

        run = queries.get_run(self.store, run_id)
        cfg = config_from_dict(run.config)
        split_file = Path(run.run_dir) / "split.json" if run.run_dir else None
        source = open_split(resolve_data(cfg.data), "test",
                            split_file=split_file if split_file and split_file.exists() else None)
        try:
            rng = np.random.default_rng(seed)
            allowed = selected_indices(source, cfg.classes)
            by_label = {lab: allowed[source.labels[allowed] == lab] for lab in (0, 1)}
            picked = []
            for lab in labels:
                pool = allowed if lab is None or not len(by_label[lab]) else by_label[lab]
                picked.append(int(rng.choice(pool)))
            patches = np.stack([source.read(i, i + 1)[0] for i in picked])
        finally:
            source.close()
        return to_uint8(to_model_input(patches, cfg.image_size, cfg.preprocess, "cpu"))
