"""`ddpm-tui synth`: a run's labelled samples as a dataset in the PCam layout."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from core.samplers import sampler_choices
from core.text import printable
from ddpm_tui.cli.render import say_above, stage_progress
from ddpm_tui.options import Where, global_options


@global_options
def synth(
    run: Annotated[str, typer.Argument(help="run id")],
    n: Annotated[int, typer.Option("--n", help="patches to draw")],
    out: Annotated[Path, typer.Option("--out", help="folder to write the set to (new, empty, or this very set to resume)")],
    class_name: Annotated[Optional[str], typer.Option("--class", help="cancerous|non_cancerous|both [default: both for a conditional run, else the run's class]")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help=sampler_choices())] = "dpm++",
    steps: Annotated[Optional[int], typer.Option("--steps", help="sampling steps [default: the sampler's own]")] = None,
    guidance: Annotated[float, typer.Option("--guidance", help="classifier-free guidance weight w")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="seed of the whole set (each batch draws from its own seed from it)")] = 0,
    checkpoint: Annotated[Optional[int], typer.Option("--checkpoint", help="draw from this step's checkpoint [default: the newest]")] = None,
    device: Annotated[str, typer.Option("--device", help="auto|cpu|cuda")] = "auto",
    where: Where = None,
):
    """Write N labelled samples of a run as a synthetic PCam set (train split h5 files and a
    manifest), batch by batch: `--data OUT` trains on it, `classifier train --data OUT` learns from
    it. A killed synth resumes when run again with the same options."""
    from rich.console import Console

    from core.config import check_device

    check_device(device)
    lab = where.lab(create=False)
    plan = lab.plan_synth(run, out, n, classes=class_name, sampler=sampler, steps=steps, guidance=guidance,
                          seed=seed, checkpoint=checkpoint)
    with stage_progress(Console(stderr=True)) as progress:
        task = progress.add_task("drawing", total=plan.n)
        manifest = lab.synthesize(plan, device=device, say=say_above(progress),
                                  on_progress=lambda done, total: progress.update(task, completed=done))
    counts = ", ".join(f"{name} {count}" for name, count in manifest["counts"].items())
    typer.echo(f"{printable(str(plan.out))}: {plan.n} patches of run {plan.run_id} (step {plan.checkpoint_step}; "
               f"{plan.sampler}, {plan.steps} steps, guidance {plan.guidance:g}, seed {plan.seed}): {counts}")
