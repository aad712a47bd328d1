"""The run page's evaluation panel and starting an evaluation from the TUI."""

import pytest
from textual.widgets import Static

from conftest import wait_for, wait_screen
from core.store import queries
from ddpm_tui.tui.screens.detail import RunDetailScreen


@pytest.mark.asyncio
async def test_run_page_shows_the_latest_evaluation_of_each_metric_with_its_ci(tui_app):
    store = tui_app.lab.store
    queries.add_evaluation(store, 1, "nll", 6.2, 6.0, 6.4, 64, "test", 0, {"estimate": False}, checkpoint_step=100)
    queries.add_evaluation(store, 1, "nll", 5.91, 5.8, 6.02, 128, "test", 0, {"estimate": True}, checkpoint_step=100)
    queries.add_evaluation(store, 1, "kid", 0.0123, 0.004, 0.02, 128, "test", 0, {}, checkpoint_step=100,
                           sampler="ddim", steps=50, classifier_id=1)
    async with tui_app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table").row_count == 3, what="rows")
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        panel = screen.query_one("#detail-eval", Static)
        await wait_for(pilot, lambda: "NLL" in str(panel.render()), what="the evaluation panel")
        text = str(panel.render())
        assert "evaluation n=128 test @100" in text
        assert "NLL b/d  5.91* [5.8,6.02]" in text and "6.2" not in text
        assert "KID      0.0123 [0.004,0.02]" in text


@pytest.mark.asyncio
async def test_evaluate_key_and_palette_command_check_the_request_first(tui_app):
    async with tui_app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table").row_count == 3, what="rows")
        await pilot.press("e")
        await wait_for(pilot, lambda: any("has no checkpoint yet" in n.message for n in pilot.app._notifications),
                       what="an error naming the missing checkpoint")
        titles = [c.title for c in pilot.app.get_system_commands(pilot.app.screen)]
        assert "Evaluate runs" in titles
    assert queries.evaluations(tui_app.lab.store) == []


@pytest.mark.asyncio
async def test_the_run_page_plays_the_reverse_process_gif(tui_app, tmp_path):
    import numpy as np

    from core.images import save_gif
    from ddpm_tui.tui.widgets.sample_view import SampleView

    gif = tmp_path / "runs" / "1" / "samples" / "reverse-step-00000100.gif"
    save_gif(gif, [np.full((20, 40, 3), 25 * i, np.uint8) for i in range(6)], hold_last=0)
    queries.add_artifact(tui_app.lab.store, 1, "gif", str(gif), 100)
    async with tui_app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table").row_count == 3, what="rows")
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        view = screen.query_one(SampleView)
        await pilot.press("v")
        await wait_for(pilot, lambda: view.playing and view.frame >= 2, what="frames advancing")
        assert len(view.frames) == 6 and "reverse process" in str(view.query_one("#sample-caption").render())
        await pilot.press("v")
        assert not view.playing and "samples: step-00000100.png" in str(view.query_one("#sample-caption").render())


class EndingProcess:
    """Stands in for the detached evaluation's Popen: running until `code` is set; counts the app's looks."""

    def __init__(self):
        self.code, self.pid, self.polls = None, 4321, 0

    def poll(self):
        self.polls += 1
        return self.code


@pytest.mark.asyncio
async def test_an_evaluation_started_here_is_announced_when_it_ends(tui_app, tmp_path):
    import time

    from core.services.evaluation import EvaluationJob

    done, broken = EndingProcess(), EndingProcess()
    async with tui_app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table").row_count == 3, what="rows")
        pilot.app.watch_evaluation(EvaluationJob(done, [1], tmp_path / "a.log", time.time() - 1))
        pilot.app.watch_evaluation(EvaluationJob(broken, [2], tmp_path / "b.log", time.time() - 1))
        # the app's poller has looked twice, so the first look's outcome has been shown (there is none yet)
        await wait_for(pilot, lambda: done.polls >= 2 and broken.polls >= 2, what="two looks at the jobs")
        assert not [n for n in pilot.app._notifications if "evaluation of run" in n.message]  # still running
        queries.add_evaluation(tui_app.lab.store, 1, "nll", 5.91, 5.8, 6.02, 128, "test", 0, {}, checkpoint_step=100)
        done.code, broken.code = 0, 1
        await wait_for(pilot, lambda: len([n for n in pilot.app._notifications if "evaluation of run" in n.message]) == 2,
                       what="two toasts")
        toasts = {n.message: n.severity for n in pilot.app._notifications if "evaluation of run" in n.message}
        assert toasts == {"evaluation of run(s) 1 done: run 1 nll 5.91": "information",
                          f"evaluation of run(s) 2 failed (exit 1): see {tmp_path / 'b.log'}": "error"}
        assert pilot.app.evaluation_jobs == []
