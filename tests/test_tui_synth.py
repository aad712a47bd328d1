"""The run page's "Make a synthetic set" (y): it asks how many patches, refuses what the run cannot
label in a toast, and starts the detached synth otherwise."""

import pytest

from conftest import wait_for, wait_screen
from core.services.sampling import SynthJob


def toasts(pilot) -> list[str]:
    return [str(n.message) for n in pilot.app._notifications]


async def open_run_page_and_ask(pilot, text: str):
    from ddpm_tui.tui.screens.detail import RunDetailScreen
    from ddpm_tui.tui.screens.dialogs import TextPrompt

    await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table").row_count == 3, what="rows")
    await pilot.press("enter")
    await wait_screen(pilot, RunDetailScreen)
    await pilot.press("y")
    prompt = await wait_screen(pilot, TextPrompt)
    assert "Make a synthetic set of run 1" in prompt.title_text
    await pilot.press(*text, "enter")


@pytest.mark.asyncio
async def test_a_run_whose_samples_carry_no_label_is_refused_in_a_toast(tui_app):
    async with tui_app.run_test(size=(140, 40)) as pilot:
        await open_run_page_and_ask(pilot, "40")
        await wait_for(pilot, lambda: any("unconditional on both classes" in t for t in toasts(pilot)),
                       what="the refusal toast")
    assert not (tui_app.lab.runs_dir / "1" / "synthetic").exists()


@pytest.mark.asyncio
async def test_a_synthetic_set_starts_in_the_background_and_says_where(tui_app, monkeypatch, tmp_path):
    started = []

    def start_synth(run_id, n, checkpoint=None):
        started.append((run_id, n, checkpoint))
        return SynthJob(4242, tmp_path / "set", tmp_path / "set.log")

    monkeypatch.setattr(tui_app.lab, "start_synth", start_synth)
    async with tui_app.run_test(size=(140, 40)) as pilot:
        await open_run_page_and_ask(pilot, "40")
        await wait_for(pilot, lambda: any("drawing 40 labelled patches" in t for t in toasts(pilot)),
                       what="the started toast")
        assert started == [(1, 40, None)]
        assert any(f"into {tmp_path / 'set'}" in t for t in toasts(pilot))
        await pilot.press("y")
        await pilot.press(*"lots", "enter")
        await wait_for(pilot, lambda: any("expected a positive whole number of patches, got 'lots'" in t
                                          for t in toasts(pilot)), what="the bad-number toast")
    assert started == [(1, 40, None)]
