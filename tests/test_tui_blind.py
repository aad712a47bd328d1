"""Pilot tests of the blind test view, on tiny runs trained in-process (2 steps each)."""

import sqlite3
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from conftest import TINY, wait_for, write_pcam
from core.blind import CLASS_MODE, PAIR_MODE, p_value
from core.store import Store, queries
from ddpm_tui.tui.screens.blind import BlindTestScreen


def train(url: str, runs_dir: Path, pcam: Path, *options: str) -> None:
    from ddpm_tui.cli import main

    try:
        main(["--db", url, "--runs-dir", str(runs_dir), "train", "--data", str(pcam), *TINY, "--max-steps", "2",
              *options])
    except SystemExit as exc:
        assert exc.code in (0, None), f"training failed with exit code {exc.code}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """runs.db with run 1 (conditional, finished) and run 2 (unconditional cancerous, finished)."""
    root = tmp_path_factory.mktemp("blind")
    pcam = write_pcam(root / "pcam")
    url = f"sqlite:///{root / 'runs.db'}"
    train(url, root / "runs", pcam, "--conditional", "--name", "cond")
    train(url, root / "runs", pcam, "--classes", "cancerous", "--name", "uncond")
    return root


@pytest.fixture
def blind_app(trained, tmp_path):
    """A DdpmApp over a private copy of the trained store (the checkpoints are shared, read-only)."""
    from ddpm_tui.tui.app import DdpmApp
    from core.services.lab import Lab

    src, dst = sqlite3.connect(trained / "runs.db"), sqlite3.connect(tmp_path / "runs.db")
    src.backup(dst)
    src.close()
    dst.close()
    return DdpmApp(Lab(f"sqlite:///{tmp_path / 'runs.db'}", trained / "runs"))


async def open_blind(pilot) -> BlindTestScreen:
    await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table", DataTable).row_count == 2, what="runs")
    await pilot.press("5")
    screen = pilot.app.screen
    assert isinstance(screen, BlindTestScreen)
    screen.seed = 1234
    await wait_for(pilot, lambda: screen.run_record is not None, what="default run")
    return screen


async def choose_run(pilot, screen, run_id: int) -> None:
    await pilot.press("e")
    box = screen.query_one("#blind-run", Input)
    assert box.has_focus
    box.value = ""
    await pilot.press(*str(run_id), "enter")
    await wait_for(pilot, lambda: screen.run_record is not None and screen.run_record.id == run_id,
                   what=f"run {run_id}")
    assert not box.has_focus


def result_text(screen) -> str:
    return str(screen.query_one("#blind-result", Static).render())


@pytest.mark.asyncio
async def test_class_test_scores_stores_and_lists(blind_app):
    async with blind_app.run_test(size=(120, 40)) as pilot:
        screen = await open_blind(pilot)
        assert screen.run_id == 1  # the run under the runs cursor
        assert screen.query_one("#blind-run", Input).value == "1"
        await pilot.press("g")
        await wait_for(pilot, lambda: screen.state == "trial", what="samples")
        session = screen.session
        assert session.n == 10 and sorted(session.truths).count("cancerous") == 5
        assert screen.query_one("#blind-img-a").image.size == (96, 96)  # the 32 px patch, enlarged
        assert "cancerous" in str(screen.query_one("#blind-prompt", Static).render())
        for _ in range(10):
            await pilot.press("c")  # always "cancerous": right exactly half the time
        assert screen.state == "result" and session.correct == 5
        assert "5 / 10 correct" in result_text(screen) and "p = 0.623" in result_text(screen)
        await pilot.app.workers.wait_for_complete()
        stored = queries.blind_tests(pilot.app.lab.store)
        assert [(t.run_id, t.mode, t.n, t.correct) for t in stored] == [(1, CLASS_MODE, 10, 5)]
        assert stored[0].p_value == 0.623046875
        assert stored[0].answers["seed"] == 1234 and len(stored[0].answers["trials"]) == 10
        assert {t["answer"] for t in stored[0].answers["trials"]} == {"cancerous"}
        await wait_for(pilot, lambda: screen.query_one("#blind-results", DataTable).row_count == 1
                       and "5/10" in [str(c) for c in screen.query_one("#blind-results", DataTable).get_row_at(0)],
                       what="results table")


@pytest.mark.asyncio
async def test_the_question_fits_the_run_an_unconditional_run_has_no_class_to_guess(blind_app):
    async with blind_app.run_test(size=(120, 40)) as pilot:
        screen = await open_blind(pilot)
        question = lambda: str(screen.query_one("#blind-question", Static).render())  # noqa: E731
        assert question() == "Can YOU guess which ones are cancerous?"  # run 1: conditional
        await choose_run(pilot, screen, 2)
        assert question() == "Can YOU tell which patch the model made?"


@pytest.mark.asyncio
async def test_real_vs_generated_with_keys_and_arrows(blind_app):
    async with blind_app.run_test(size=(120, 40)) as pilot:
        screen = await open_blind(pilot)
        await choose_run(pilot, screen, 2)  # unconditional: the pair test works on any run
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.state == "trial", what="samples")
        assert screen.mode == PAIR_MODE and screen.session.n == 10
        assert screen.query_one("#blind-img-a").image.size == (96, 96)
        assert screen.query_one("#blind-img-b").image.size == (96, 96)
        assert screen.query_one("#blind-panel-b").display
        truths = list(screen.session.truths)
        keys = {"a": ("a", "left"), "b": ("b", "right")}
        for i, side in enumerate(truths):
            await pilot.press(keys[side][i % 2])  # letters and arrows both answer
        assert screen.state == "result" and screen.session.correct == 10
        assert "10 / 10 correct" in result_text(screen) and "better than chance" in result_text(screen)
        await pilot.app.workers.wait_for_complete()
        [stored] = queries.blind_tests(pilot.app.lab.store)
        assert (stored.run_id, stored.mode, stored.correct, stored.p_value) == (2, PAIR_MODE, 10, 1 / 1024)
        assert [t["generated"] for t in stored.answers["trials"]] == truths


@pytest.mark.asyncio
async def test_pairs_of_a_conditional_run_and_an_abandoned_test(blind_app):
    async with blind_app.run_test(size=(80, 24)) as pilot:
        screen = await open_blind(pilot)
        screen.query_one("#blind-count", Input).value = "4"
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.state == "trial", what="samples")
        assert screen.session.n == 4
        await pilot.press("a", "escape")  # abandon: nothing stored
        assert screen.state == "setup"
        await pilot.press("g")
        await wait_for(pilot, lambda: screen.state == "trial", what="samples")
        assert screen.session.n == 4  # 2 per class
        for truth in screen.session.truths[:3]:
            await pilot.press("c" if truth == "cancerous" else "n")
        await pilot.press("c" if screen.session.truths[3] == "non_cancerous" else "n")  # one wrong
        assert "3 / 4 correct" in result_text(screen)
        await pilot.app.workers.wait_for_complete()
        assert [(t.n, t.correct, t.p_value) for t in queries.blind_tests(pilot.app.lab.store)] == [
            (4, 3, p_value(3, 4))]
        await pilot.press("escape", "escape")  # result -> setup -> runs
        assert pilot.app.current_mode == "runs"


@pytest.mark.asyncio
async def test_class_test_refuses_an_unconditional_run_and_a_run_without_checkpoint(blind_app, trained):
    async with blind_app.run_test(size=(120, 40)) as pilot:
        screen = await open_blind(pilot)
        await choose_run(pilot, screen, 2)
        assert "class test needs a conditional run" in str(screen.query_one("#blind-run-info", Static).render())
        await pilot.press("g")
        assert screen.state == "setup"
        assert any("not class-conditional" in str(n.message) for n in pilot.app._notifications)
        await pilot.press("e", "backspace", "9", "9", "enter")
        await wait_for(pilot, lambda: "no run with id 99" in str(screen.query_one("#blind-run-info", Static).render()),
                       what="unknown run")
        assert screen.run_id is None
        await pilot.press("v")
        assert screen.state == "setup"
    assert not queries.blind_tests(Store(blind_app.lab.db_url))


@pytest.mark.asyncio
async def test_blind_test_of_a_seeded_run_without_checkpoint_reports_it(tui_app):
    async with tui_app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.run_record is not None, what="default run")
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.state == "setup", what="failure")
        await wait_for(pilot, lambda: any("has no checkpoint yet" in str(n.message)
                                          for n in pilot.app._notifications), what="error notification")
        assert pilot.app.is_running
