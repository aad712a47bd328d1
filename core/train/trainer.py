"""The training loop: config in, checkpoints and metrics out.

One path: TrainConfig -> data stream, U-Net, diffusion, AdamW -> `loss = diffusion.training_loss(...)`
per step -> EMA, checkpoints, samples, validation loss. Resume is exact: the checkpoint holds
everything that decides the next step (weights, EMA, optimizer, scaler, RNG states, data position);
the learning rate is a pure function of the step.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.compilation import COMPILE_MODE, compile_cache, compile_network, compiles
from core.config import TrainConfig
from core.data import CLASS_LABELS, PatchStream, open_split, selected_indices, to_model_input
from core.device import has_native_bf16, load_weights, pick_device, training_precision
from core.errors import BadInput, WorkFailed
from core.factory import create_model_and_diffusion
from core.generation import generate
from core.images import display_scale, make_grid, reverse_process_frames, save_gif, save_png
from core.run_dir import RunDir
from core.smoothing import RunningMean
from core.train import checkpoint as ckpt
from core.train import resources
from core.train.distributed import Replicas, shard

log = logging.getLogger("ddpm_tui.train")


@dataclass
class StepStats:
    step: int
    total: int
    loss: float | None
    img_per_s: float
    lr: float
    eta_s: float
    nonfinite: int


def warmup_lr(base_lr: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up to base_lr over warmup_steps, then constant."""
    return base_lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else base_lr


def warmup_for_run(warmup_steps: int, total_steps: int) -> int:
    """The warm-up a run of `total_steps` gets: at most a tenth of it. The default 200 steps suits
    long runs; a 150-step run that spent all of it warming up would end as pure noise."""
    return min(warmup_steps, total_steps // 10)


def ema_decay_at(decay: float, step: int) -> float:
    """EMA decay ramped up early so the average is not dominated by the random init."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for the parameters, ema <- model for the buffers,
    each as one multi-tensor call instead of a Python loop over a few hundred tensors."""
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
    buffers = list(ema.buffers())
    if buffers:
        torch._foreach_copy_(buffers, list(model.buffers()))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the model's parameters with multi-tensor kernels: fused on CUDA, foreach on a
    CPU (torch's CPU default is a Python loop over every tensor, a quarter of a step's time)."""
    kernels = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **kernels)


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_dict(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_state_from_dict(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_dict(s) -> dict:
    # weights_only loading accepts tensors and plain containers, not numpy arrays
    return {"name": s[0], "keys": torch.from_numpy(s[1].astype(np.int64)), "pos": s[2], "has_gauss": s[3],
            "gauss": s[4]}


def _numpy_state_from_dict(d: dict):
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["gauss"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def total_steps(cfg: TrainConfig, epoch_size: int) -> int:
    if cfg.epochs > 0:
        return max(1, math.ceil(cfg.epochs * epoch_size / cfg.global_batch_size))
    return cfg.max_steps


class Trainer:
    """Trains one run in `run_dir` (checkpoints/, samples/, train.log).

    Under torchrun (`replicas` of several processes) every rank trains its share of each global
    batch through DistributedDataParallel; only rank 0 writes (metrics, samples, checkpoints)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, data_root: Path, metrics=None,
                 on_step: Callable[[StepStats], None] | None = None, split_file: Path | None = None,
                 on_artifact: Callable[[str, Path, int], None] | None = None, stop: threading.Event | None = None,
                 replicas: Replicas | None = None):
        self.cfg, self.files = cfg, RunDir(run_dir)
        self.ckpt_dir = self.files.checkpoints
        self.metrics, self.on_step, self.on_artifact = metrics, on_step, on_artifact
        self.replicas = replicas or Replicas()
        if self.replicas.world_size != cfg.world_size:
            raise BadInput(f"run trained by {cfg.world_size} process(es) (--nproc {cfg.nproc} --nnodes {cfg.nnodes}) "
                           f"but {self.replicas.world_size} were started")
        self.device = self.replicas.device(pick_device(cfg.device))
        self.replicas.join(self.device)
        self.precision = training_precision(cfg.precision, self.device, has_native_bf16(self.device),
                                            from_weights=bool(cfg.init_weights))
        if cfg.precision == "auto":
            log.info("precision auto: training in %s on %s", self.precision, self.device)
        elif self.precision != cfg.precision:
            log.warning("--precision %s needs CUDA%s; training in fp32 on %s", cfg.precision,
                        " or a CPU with native bf16" if cfg.precision == "bf16" else "", self.device)
        self.channels_last = self.device.type == "cuda"
        seed_everything(cfg.seed)

        self.source = open_split(data_root, "train", split_file=split_file)
        self.indices = selected_indices(self.source, cfg.classes)
        self.total = total_steps(cfg, len(self.indices))
        self.stream = PatchStream(self.source, self.indices, cfg.batch_size, cfg.seed, cfg.augment,
                                  window_blocks=cfg.shuffle_window, rank=self.replicas.rank,
                                  world_size=self.replicas.world_size)
        self.data_root, self.split_file = data_root, split_file

        model, self.diffusion = create_model_and_diffusion(cfg)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.init_weights:  # a resumed run's checkpoint replaces them in load_state
            initial = ckpt.read_initial_weights(cfg)
            self.model.load_state_dict(initial)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.net = self.model
        if self.replicas.distributed:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.compiled = compiles(cfg.compile, self.device, cfg.deterministic)
        if self.compiled:
            self.net = compile_network(self.net)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.step = 0
        self.nonfinite_total = 0
        self.nonfinite_run = 0
        self.stop = stop or threading.Event()  # set: checkpoint at the next step boundary and return
        self.last_ckpt_step = -1
        self._val_batch = None
        self.smooth_loss = RunningMean()

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "data_position": self.stream.position,
            "world_size": self.replicas.world_size,
            "nonfinite_total": self.nonfinite_total,
            "smooth_loss": self.smooth_loss.state_dict(),
            "lr_schedule": {"base_lr": self.cfg.lr, "warmup_steps": self.cfg.warmup_steps},
            "config": self.cfg.to_dict(),
            "architecture_version": ckpt.ARCHITECTURE_VERSION,
        }

    def load_state(self, path: Path, state: dict) -> None:
        ckpt.check_architecture(path, state, self.cfg)
        if state.get("world_size", 1) != self.replicas.world_size:
            raise BadInput(f"{path}: written by {state.get('world_size', 1)} training process(es), resumed by "
                           f"{self.replicas.world_size}; the data order and batches of an exact resume depend on it")
        load_weights(self.model, state["model"], path)
        load_weights(self.ema, state["ema"], path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
            self.stream.position = int(state["data_position"])
            self.nonfinite_total = int(state.get("nonfinite_total", 0))
            self.smooth_loss.load_state_dict(state["smooth_loss"])
            set_rng_state(state["rng"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise BadInput(f"{path}: incomplete checkpoint ({exc.__class__.__name__}: {exc})") from None
        self.last_ckpt_step = self.step

    def resume_from_latest(self) -> Path | None:
        """Restore the newest loadable checkpoint that fits (ckpt.choose_checkpoint) and set
        aside the unloadable ones after it; None when the run has none yet. Rank 0 reads it and
        hands it to the other ranks, which need no access to its files."""
        found = ckpt.choose_checkpoint(self.ckpt_dir, self.cfg) if self.replicas.is_main else None
        found = self.replicas.from_main(found)
        if found is None:
            return None
        path, state = found
        self.load_state(path, state)
        if self.replicas.is_main:
            ckpt.set_aside_after(self.ckpt_dir, self.step, "unloadable")
        return path

    def ensure_checkpoint_room(self) -> None:
        """WorkFailed (disk full) now, before anything is rewritten, when the checkpoint folder's disk
        cannot hold one more checkpoint (the newest one's size, or an estimate from the model)."""
        existing = ckpt.list_checkpoints(self.ckpt_dir)
        size = existing[-1].stat().st_size if existing else resources.checkpoint_bytes(self.cfg)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        ckpt.ensure_room(self.ckpt_dir, size)

    def save_checkpoint(self) -> Path:
        path = ckpt.checkpoint_path(self.ckpt_dir, self.step)
        ckpt.save_atomic(self.state_dict(), path)
        ckpt.prune(self.ckpt_dir, self.cfg.keep_ckpts, self.step)
        self.last_ckpt_step = self.step
        log.info("checkpoint %s", path.name)
        if self.on_artifact:
            self.on_artifact("checkpoint", path, self.step)
        return path

    # ---- one step ------------------------------------------------------------------------------
    def autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def train_step(self, images: np.ndarray, labels: np.ndarray, codes: np.ndarray | None) -> float | None:
        """One optimizer step; returns the loss, or None when it (or the gradient) was not finite."""
        cfg, replicas = self.cfg, self.replicas
        x = to_model_input(images, cfg.image_size, cfg.preprocess, self.device, codes, self.channels_last)
        global_batch = x.shape[0] * replicas.world_size
        y = None
        if cfg.conditional:
            y = torch.from_numpy(labels).to(self.device)
            drop = shard(torch.rand(global_batch) < cfg.cond_drop, replicas)
            y = torch.where(drop.to(self.device), torch.full_like(y, self.model.num_classes), y)
        t = shard(self.diffusion.sample_timesteps(global_batch, self.device), replicas)
        noise = shard(torch.randn((global_batch, *x.shape[1:]), device=self.device), replicas)
        for group in self.optimizer.param_groups:
            group["lr"] = warmup_lr(cfg.lr, self.step, cfg.warmup_steps)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.diffusion.training_loss(lambda xt, tt: self.net(xt, tt, y), x, t=t, noise=noise)
        mean_loss = replicas.mean(loss.detach())
        if self.scaler.is_enabled() and not torch.isfinite(mean_loss):
            return None  # before backward: the GradScaler must not see a step that is then skipped
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        # the step's one wait for the device: loss and gradient norm come back together (a
        # non-finite loss has non-finite gradients, so its wasted backward costs nothing else)
        loss_value, norm_value = torch.stack([mean_loss.float(), grad_norm.float()]).tolist()
        if not math.isfinite(loss_value) or not (math.isfinite(norm_value) or self.scaler.is_enabled()):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.scaler.step(self.optimizer)  # with fp16 it skips the update itself on inf gradients
        self.scaler.update()
        ema_update(self.ema, self.model, ema_decay_at(cfg.ema_decay, self.step))
        self._grad_norm = norm_value
        return loss_value

    # ---- extras ------------------------------------------------------------------------------------
    def write_samples(self, with_gif: bool = False) -> Path:
        """A 4x4 grid of EMA samples (DDIM, 25 steps, fixed seed so grids are comparable over time),
        and with `with_gif` the reverse process as a GIF: x_t beside the predicted x_0."""
        samples = generate(self.ema, self.diffusion, 16, self.cfg.image_size, "ddim", 25, seed=self.cfg.seed,
                           device=self.device, frames=25 if with_gif else 0)
        scale = display_scale(self.cfg.image_size)
        path = self.files.samples / f"step-{self.step:08d}.png"
        save_png(path, make_grid(samples.images, ncols=4, scale=scale))
        if self.on_artifact:
            self.on_artifact("samples", path, self.step)
        if with_gif:
            gif = path.with_name(f"reverse-step-{self.step:08d}.gif")
            save_gif(gif, reverse_process_frames(samples, "both", scale))
            if self.on_artifact:
                self.on_artifact("gif", gif, self.step)
        return path

    @torch.no_grad()
    def validation_loss(self, n: int = 128) -> float | None:
        """Mean EMA loss on a fixed, seeded random subset of the validation patches (a file ordered
        by slide makes its first patches one slide), with fixed timesteps and noise."""
        if self._val_batch is None:
            try:
                source = open_split(self.data_root, "valid", split_file=self.split_file)
            except BadInput:
                return None
            candidates = np.flatnonzero(np.isin(source.labels, CLASS_LABELS[self.cfg.classes]))
            if not candidates.size:
                return None
            rng = np.random.default_rng([self.cfg.seed, 1])
            idx = np.sort(rng.choice(candidates, size=min(n, candidates.size), replace=False))
            images = np.stack([source.read(int(i), int(i) + 1)[0] for i in idx])
            x = to_model_input(images, self.cfg.image_size, self.cfg.preprocess, self.device)
            g = torch.Generator().manual_seed(self.cfg.seed)
            t = torch.randint(0, self.diffusion.num_timesteps, (len(x),), generator=g).to(self.device)
            noise = torch.randn(x.shape, generator=g).to(self.device)
            y = torch.from_numpy(source.labels[idx].astype(np.int64)).to(self.device) if self.cfg.conditional else None
            self._val_batch = (x, t, noise, y)
            source.close()
        x, t, noise, y = self._val_batch
        loss = self.diffusion.training_loss(lambda xt, tt: self.ema(xt, tt, y), x, t=t, noise=noise)
        return float(loss)

    # ---- the loop --------------------------------------------------------------------------------
    def fit(self) -> str:
        """Train to the last step. Returns 'finished' or 'stopped'; raises WorkFailed on divergence."""
        cfg = self.cfg
        self.model.train()
        rate_steps, rate_time, last_time = 0, 0.0, time.perf_counter()
        last_log = 0.0
        compiling = self.compiled  # the first step compiles: reported, and kept out of the img/s
        if compiling:
            log.info("torch.compile (mode %s): compiling the network at the first step", COMPILE_MODE)
        if self.replicas.is_main and (advice := resources.batch_advice(cfg, self.device)):
            log.info("memory: %s", advice)
        try:
            while self.step < self.total:
                if self.replicas.any(self.stop.is_set(), self.device):
                    if self.last_ckpt_step != self.step and self.replicas.is_main:
                        self.save_checkpoint()
                    return "stopped"
                images, labels, codes = self.stream.next_batch()
                loss = self.train_step(images, labels, codes)
                self.step += 1
                now = time.perf_counter()
                if compiling:
                    compiling = False
                    log.info("torch.compile (mode %s): the first step took %.1f s, compiling included; kernels "
                             "cached in %s for later runs", COMPILE_MODE, now - last_time, compile_cache())
                else:
                    rate_steps, rate_time = rate_steps * 0.9 + 1, rate_time * 0.9 + (now - last_time)
                last_time = now
                img_per_s = rate_steps * cfg.global_batch_size / rate_time if rate_time else 0.0
                if loss is None:
                    self.nonfinite_total += 1
                    self.nonfinite_run += 1
                    if self.metrics:
                        self.metrics.log(self.step, nonfinite_total=self.nonfinite_total)
                    if self.nonfinite_run >= cfg.max_nonfinite:
                        raise WorkFailed(
                            f"loss was not finite for {self.nonfinite_run} steps in a row at step {self.step}; "
                            f"stopped, last good checkpoint kept in {self.ckpt_dir}")
                else:
                    self.nonfinite_run = 0
                    self.smooth_loss.update(loss)
                    if self.metrics:
                        self.metrics.log(self.step, **{"train/loss": loss, "train/loss_smooth": self.smooth_loss.value,
                                                       "lr": self.optimizer.param_groups[0]["lr"],
                                                       "grad_norm": self._grad_norm, "img_per_s": img_per_s})
                stats = StepStats(self.step, self.total, loss, img_per_s, self.optimizer.param_groups[0]["lr"],
                                  (self.total - self.step) * cfg.global_batch_size / img_per_s if img_per_s else 0.0,
                                  self.nonfinite_total)
                if self.on_step:
                    self.on_step(stats)
                if not self.replicas.is_main:
                    continue
                if time.monotonic() - last_log > 10 or self.step == self.total:
                    last_log = time.monotonic()
                    log.info("step %d/%d loss %s %.1f img/s eta %.0fs", self.step, self.total,
                             "nan" if loss is None else f"{loss:.4f}", img_per_s, stats.eta_s)
                # what belongs to a step is written before its checkpoint: a run killed right after
                # the checkpoint resumes past this step and would never redo it
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    val = self.validation_loss()
                    if val is not None and self.metrics:
                        self.metrics.log(self.step, **{"val/loss": val})
                if cfg.sample_every and self.step % cfg.sample_every == 0 or self.step == self.total:
                    self.write_samples(with_gif=self.step == self.total)
                if self.step % cfg.ckpt_every == 0 or self.step == self.total:
                    self.save_checkpoint()
            return "finished"
        finally:
            if self.metrics:
                self.metrics.flush()

    def close(self) -> None:
        self.stream.close()
        self.source.close()
