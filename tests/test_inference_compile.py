"""Sampling, evaluation and synthetic sets compile the run's network on CUDA when the job is long
enough to win the compile back (issue 22): the rule, each job's count of network passes, and the
wiring, through torch.compile's real graph capture with a backend that runs the captured graphs as
they are (Inductor's kernels are checked by the compiled-training test)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from core import compilation, inference
from core.compilation import INFERENCE_BREAK_EVEN_PIXEL_PASSES, compiles_inference
from core.config import TrainConfig
from core.evaluate.planning import EvalPlan

from conftest import TINY

AT_96 = INFERENCE_BREAK_EVEN_PIXEL_PASSES // 96 ** 2
NOTICE = "torch.compile compiles the network for this job"


@pytest.fixture(autouse=True)
def fresh_graph_cache():
    """Graphs captured here must not serve another test's torch.compile."""
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("choice, device, passes, size, expected", [
    ("auto", "cuda", AT_96, 96, True), ("auto", "cuda", AT_96 - 1, 96, False), ("on", "cuda", AT_96, 96, True),
    ("off", "cuda", 10 ** 9, 96, False), ("auto", "cpu", 10 ** 9, 96, False), ("on", "cpu", 10 ** 9, 96, False),
    ("auto", "cuda", AT_96 * 9, 32, True), ("auto", "cuda", AT_96 * 9 - 1, 32, False),
])
def test_inference_compiles_on_cuda_once_the_job_wins_the_compile_back(choice, device, passes, size, expected):
    assert AT_96 == 250_000
    assert compiles_inference(choice, torch.device(device), passes, size) is expected


def plan(metrics: tuple[str, ...], nll_timesteps: int | None = None, guidance: float = 0.0) -> EvalPlan:
    return EvalPlan(run_id=1, metrics=metrics, n=100, split="test", nll_timesteps=nll_timesteps, sampler="ddim",
                    steps=50, guidance=guidance, checkpoint_step=0, seed=0, classifier_id=None,
                    cfg=TrainConfig(timesteps=1000), run_dir=Path("."))


def test_an_evaluation_counts_the_bounds_passes_and_one_set_of_sample_chains():
    assert plan(("nll",)).network_passes() == 100 * 1000  # t = 1..999 and the decoder's t = 0
    assert plan(("nll",), nll_timesteps=10).network_passes() == 100 * 11
    assert plan(("kid",)).network_passes() == 100 * 50
    assert plan(("nll", "kid", "ssim")).network_passes() == 100 * 1000 + 100 * 50
    assert plan(("kid",), guidance=2.0).network_passes() == 100 * 100  # with and without the class


def test_sample_eval_and_synth_run_through_the_compiled_network(workdir, cli, pcam, monkeypatch):
    """Each job passes its count of network passes to the rule; told to compile, it runs through
    torch.compile's captured graphs and draws the same images as the eager network."""
    asked, graphs = [], []
    real_compile = torch.compile

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def rule(answer):
        def decide(choice, device, passes, image_size):
            asked.append(passes)
            return answer
        return decide

    r = cli("train", "--data", pcam, *TINY, "--max-steps", "2", "--sample-every", "0", "--conditional")
    assert r.code == 0, r
    monkeypatch.setattr(compilation.torch, "compile", lambda net, mode: real_compile(net, backend=capture))
    monkeypatch.delenv(compilation.CACHE_ENV, raising=False)  # restored after: compile_network sets it
    for answer, out in ((True, "compiled.png"), (False, "eager.png")):
        monkeypatch.setattr(inference, "compiles_inference", rule(answer))
        r = cli("sample", "1", "--n", "4", "--steps", "5", "--out", workdir / out)
        assert r.code == 0, r
        assert (NOTICE in r.err) is answer, r.err  # the first batch waits for the compile: say why
    assert asked == [4 * 5, 4 * 5] and graphs, (asked, graphs)
    assert np.array_equal(iio.imread(workdir / "compiled.png"), iio.imread(workdir / "eager.png"))

    monkeypatch.setattr(inference, "compiles_inference", rule(True))
    asked.clear(), graphs.clear(), torch._dynamo.reset()  # a new network of the same class reuses its graphs
    r = cli("eval", "1", "--metrics", "nll,ssim", "--n", "8", "--nll-timesteps", "5", "--steps", "5", "--json")
    assert r.code == 0 and NOTICE in r.err, r
    assert asked == [8 * 6 + 8 * 5] and graphs
    asked.clear(), graphs.clear(), torch._dynamo.reset()  # a new network of the same class reuses its graphs
    r = cli("synth", "1", "--n", "6", "--out", "set", "--steps", "2", "--device", "cpu")
    assert r.code == 0 and NOTICE in r.err, r
    assert asked == [6 * 2] and graphs


def test_a_line_said_during_a_progress_bar_shows_above_it_as_plain_printable_text():
    """On a terminal the compile notice prints above the live bar; a cache path from the environment
    is shown as it is, neither read as rich markup nor passing control characters through."""
    import io

    from rich.console import Console

    from ddpm_tui.cli.render import say_above, stage_progress

    screen = io.StringIO()
    with stage_progress(Console(file=screen, force_terminal=True, width=200)) as progress:
        progress.add_task("sampling", total=10)
        say_above(progress)("kernels in /tmp/[bold]cache\x1b[2J")
    text = screen.getvalue()
    assert "kernels in /tmp/[bold]cache" in text and "\x1b[2J" not in text, repr(text)
