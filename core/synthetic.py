"""Labelled synthetic datasets: a run's samples written in the PCam h5 layout, to train or augment a
classifier with, or to share instead of patients' slides (`ddpm-tui synth`).

The set is drawn batch by batch. Each finished batch is kept as its own file under `.parts/`, so a
killed job resumes where it stopped, and memory stays bounded by one batch for any N. When every
batch is drawn, the parts are copied, one at a time, into the train split's two h5 files, and a
manifest (MANIFEST) says how the set was made. Every batch draws from its own seed (the set's seed
and the batch's index), so a resumed set is exactly the one an uninterrupted job writes.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from core.config import SEED_MAX
from core.data.locate import resolve_data
from core.data.sources import SYNTHETIC_MANIFEST as MANIFEST
from core.data.sources import pcam_paths
from core.errors import BadInput
from core.labels import CLASS_LABELS, LABEL_NAMES
from core.loaded_run import load_run
from core.outputs import check_writable
from core.samplers import sampler_named
from core.store.db import Store

PARTS = ".parts"
BATCH = 64  # even, so that a set of both classes alternates them across batches as within one
KIND = "ddpm-tui synthetic PCam set"
MAX_IMAGES = 10_000_000
Progress = Callable[[int, int], None]  # (images written, images asked for)


@dataclass(frozen=True)
class SynthPlan:
    """A checked `synth` request; nothing drawn or written yet."""

    run_id: int
    run_name: str
    out: Path
    n: int
    classes: str  # cancerous | non_cancerous | both
    sampler: str
    steps: int
    guidance: float
    seed: int
    checkpoint_step: int
    image_size: int
    source_data: str  # the data the run learned from: a classifier trained on the set is scored on its held-out split

    def settings(self) -> dict:
        """What makes two requests the same set: a resumed job must match all of it."""
        return {"run": self.run_id, "checkpoint_step": self.checkpoint_step, "n": self.n, "classes": self.classes,
                "sampler": self.sampler, "steps": self.steps, "guidance": self.guidance, "seed": self.seed,
                "image_size": self.image_size}


def batch_labels(start: int, size: int, classes: str) -> np.ndarray:
    """The PCam labels of images start..start+size of a set: one class, or both in turn (0, 1, 0, ...)."""
    if classes == "both":
        return (np.arange(start, start + size) % 2).astype(np.uint8)
    return np.full(size, CLASS_LABELS[classes][0], np.uint8)


def batch_seed(seed: int, index: int) -> int:
    """The generator seed of batch `index` of a set drawn with `seed`: independent of every other
    batch's, so any batch can be drawn again alone."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] % (SEED_MAX + 1))


def class_counts(n: int, classes: str) -> dict[str, int]:
    labels = np.concatenate([batch_labels(s, min(BATCH, n - s), classes) for s in range(0, n, BATCH)]) if n else []
    return {name: int(np.sum(np.asarray(labels) == label)) for label, name in enumerate(LABEL_NAMES)}


def plan_synth(store: Store, run_id, out: Path, n: int, classes: str | None = None, sampler: str = "dpm++",
               steps: int | None = None, guidance: float = 0.0, seed: int = 0,
               checkpoint: int | None = None) -> SynthPlan:
    """Check a request before anything is drawn: BadInput names the first problem. Without
    `classes`, a conditional run draws both classes, a run on one class that class; an unconditional
    run on both classes cannot label its samples and is refused."""
    from core.train import checkpoint as ckpt

    chosen = sampler_named(sampler)
    if not 1 <= n <= MAX_IMAGES:
        raise BadInput(f"--n: must be between 1 and {MAX_IMAGES:,}, got {n}")
    if not math.isfinite(guidance) or guidance < 0:
        raise BadInput(f"--guidance: must be a finite number >= 0, got {guidance}")
    if not 0 <= seed <= SEED_MAX:
        raise BadInput(f"--seed: must be in 0..{SEED_MAX}, got {seed}")
    loaded = load_run(store, run_id)
    run, cfg = loaded.record, loaded.cfg
    drawable = "both" if cfg.conditional else cfg.classes
    if classes is None:
        classes = drawable
    if classes not in CLASS_LABELS:
        raise BadInput(f"--class: unknown value {classes!r} (choose from {', '.join(CLASS_LABELS)})")
    if not cfg.conditional and cfg.classes == "both":
        raise BadInput(f"run {run.id} is unconditional on both classes: its samples carry no label; synth needs a "
                       "--conditional run or a run trained on one class")
    if classes != drawable and drawable != "both":
        raise BadInput(f"--class {classes}: run {run.id} draws only {drawable} patches (trained on {cfg.classes})")
    if guidance and not cfg.conditional:
        raise BadInput(f"--guidance: run {run.id} is unconditional; guidance needs a --conditional run")
    steps = steps or chosen.steps_for(cfg.timesteps)
    if not 1 <= steps <= cfg.timesteps:
        raise BadInput(f"--steps {steps}: must be between 1 and run {run.id}'s {cfg.timesteps} diffusion steps")
    found = loaded.checkpoint(checkpoint, "; nothing to draw from")
    plan = SynthPlan(run.id, run.name, Path(out), n, classes, sampler, steps, guidance, seed,
                     ckpt.checkpoint_step(found[0]), cfg.image_size, str(resolve_data(cfg.data).resolve()))
    check_destination(plan)
    return plan


def check_destination(plan: SynthPlan) -> None:
    """The output folder is new, empty, or a set of the very same settings (finished or not): a
    synth never writes over anything else."""
    out = plan.out
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        manifest = read_manifest(out)
        if manifest is None:
            raise BadInput(f"--out {out}: not empty and not a synthetic set; give a new or empty folder")
        stored = manifest.get("settings", {})
        for key, value in plan.settings().items():
            if stored.get(key) != value:
                raise BadInput(f"--out {out}: holds a synthetic set made with {key} {stored.get(key)!r}, not "
                               f"{value!r}; give another folder")
    check_writable(out / MANIFEST, "--out")


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a synthetic set (None: the folder is not one)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: not a readable manifest ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BadInput(f"{path}: not a {KIND} manifest")
    return manifest


def synthetic_summary(manifest: dict) -> dict:
    """What `data check` shows of a synthetic set: which run drew it, how, and whether it is whole."""
    settings = manifest.get("settings", {})
    return {"run": settings.get("run"), "run_name": manifest.get("run_name"),
            "checkpoint_step": settings.get("checkpoint_step"), "sampler": settings.get("sampler"),
            "steps": settings.get("steps"), "guidance": settings.get("guidance"), "seed": settings.get("seed"),
            "complete": bool(manifest.get("complete")), "source_data": manifest.get("source_data")}


def tool_version() -> str:
    try:
        return metadata.version("ddpm-tui")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_manifest(plan: SynthPlan, complete: bool, checkpoint_path: str) -> None:
    manifest = {
        "kind": KIND, "complete": complete, "settings": plan.settings(), "run_name": plan.run_name,
        "checkpoint": checkpoint_path, "source_data": plan.source_data,
        "counts": class_counts(plan.n, plan.classes), "tool_version": tool_version(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = plan.out / MANIFEST
    temporary = path.with_name(f".{MANIFEST}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    temporary.replace(path)


def part_path(out: Path, index: int) -> Path:
    return out / PARTS / f"batch-{index:07d}.npz"


def synthesize(store: Store, plan: SynthPlan, device: str = "auto", on_progress: Progress | None = None,
               say: Callable[[str], None] | None = None) -> dict:
    """Draw the plan's set into its folder (resuming from the batches already there) and return its
    manifest. The network is loaded once; each batch is saved atomically before the next starts.
    `say` gets the lines worth showing on the way."""
    import torch

    from core.generation import generate, network_passes
    from core.inference import inference_autocast, load_run_model

    progress = on_progress or (lambda done, total: None)
    manifest = read_manifest(plan.out)
    if manifest is not None and manifest.get("complete"):
        return manifest
    net, diffusion, cfg, path, _ = load_run_model(store, plan.run_id, device, plan.checkpoint_step,
                                                  network_passes(plan.n, plan.steps, plan.guidance), say)
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / PARTS).mkdir(exist_ok=True)
    write_manifest(plan, complete=False, checkpoint_path=str(path))
    label = None if plan.classes == "both" else CLASS_LABELS[plan.classes][0]
    dev = next(net.parameters()).device
    done = 0
    for index, start in enumerate(range(0, plan.n, BATCH)):
        size = min(BATCH, plan.n - start)
        part = part_path(plan.out, index)
        if not part.exists():
            with torch.inference_mode(), inference_autocast(cfg, dev):
                images = generate(net, diffusion, size, cfg.image_size, plan.sampler, plan.steps, plan.guidance,
                                  label, seed=batch_seed(plan.seed, index), device=dev).images
            save_part(part, images, batch_labels(start, size, plan.classes))
        done += size
        progress(done, plan.n)
    assemble(plan)
    write_manifest(plan, complete=True, checkpoint_path=str(path))
    shutil.rmtree(plan.out / PARTS)
    return read_manifest(plan.out)


def save_part(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    temporary = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(temporary, x=images, y=labels)
    temporary.replace(path)


def assemble(plan: SynthPlan) -> None:
    """The parts, in order, as `camelyonpatch_level_2_split_train_{x,y}.h5` (x (N, S, S, 3) uint8, y
    (N, 1, 1, 1) uint8), written beside their final names and renamed once whole."""
    x_path, y_path = pcam_paths(plan.out, "train")
    size = plan.image_size
    x_tmp, y_tmp = x_path.with_suffix(".h5.tmp"), y_path.with_suffix(".h5.tmp")
    with h5py.File(x_tmp, "w") as xf, h5py.File(y_tmp, "w") as yf:
        x = xf.create_dataset("x", (plan.n, size, size, 3), np.uint8, chunks=(min(BATCH, plan.n), size, size, 3))
        y = yf.create_dataset("y", (plan.n, 1, 1, 1), np.uint8)
        for index, start in enumerate(range(0, plan.n, BATCH)):
            with np.load(part_path(plan.out, index)) as part:
                x[start:start + len(part["x"])] = part["x"]
                y[start:start + len(part["y"])] = part["y"].reshape(-1, 1, 1, 1)
        for f in (xf, yf):
            f.attrs["description"] = f"{KIND}: drawn by run {plan.run_id} ({plan.run_name}); see {MANIFEST}"
    x_tmp.replace(x_path)
    y_tmp.replace(y_path)


def job_command(run_id: int, out: Path, n: int, checkpoint: int | None = None) -> list[str]:
    """The command line of a synthetic set drawn in a detached process (the TUI's): the set's
    defaults otherwise (core.synthetic.plan_synth)."""
    import sys

    return [sys.executable, "-m", "core.synthetic", str(run_id), "--n", str(n), "--out", str(out),
            *(["--checkpoint", str(checkpoint)] if checkpoint is not None else [])]


def main(argv: list[str] | None = None) -> int:
    """`python -m core.synthetic RUN --n N --out DIR`: draw a set for the store in DDPM_TUI_DB."""
    import argparse
    import sys

    from core.errors import WorkFailed
    from core.locations import inherited_store_url

    parser = argparse.ArgumentParser(prog="python -m core.synthetic")
    parser.add_argument("run")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", type=int)
    args = parser.parse_args(argv)
    url = inherited_store_url("python -m core.synthetic RUN --n N --out DIR [--checkpoint STEP]")
    if url is None:
        return 2
    store = Store(url)
    try:
        plan = plan_synth(store, args.run, args.out, args.n, checkpoint=args.checkpoint)
        print(f"drawing {plan.n} patches of run {plan.run_id} into {plan.out}", flush=True)
        manifest = synthesize(store, plan, on_progress=lambda done, total: print(f"{done}/{total}", flush=True),
                              say=lambda line: print(line, flush=True))
    except (BadInput, WorkFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"done: {manifest['counts']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
