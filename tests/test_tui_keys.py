"""Keys and conventions of the TUI: the key registry and a user's remaps, the palette, vim movement,
confirmations that name the run, the grouped help at 80x24, notifications when runs end."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_for, wait_screen
from textual.command import CommandList, CommandPalette
from textual.widgets import Input, TabbedContent

from core.errors import BadInput
from core.store import queries
from ddpm_tui.keys import BY_ID, KEYS, PUNCTUATION_KEYS, TuiSettings, first_clash, load_settings, unknown_key
from ddpm_tui.tui.screens.dialogs import ConfirmDialog
from ddpm_tui.tui.screens.help import HelpScreen
from ddpm_tui.tui.screens.ablation import AblationScreen
from ddpm_tui.tui.screens.detail import RunDetailScreen
from ddpm_tui.tui.screens.launch import LaunchScreen
from ddpm_tui.tui.screens.runs import RunsScreen


async def rows_loaded(pilot, n=3):
    await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table").row_count == n, what="rows")
    return pilot.app.screen.query_one("#runs-table")


# ---- the registry and the settings file --------------------------------------------------------------
def test_every_key_has_a_unique_id_and_the_defaults_do_not_clash():
    assert len(BY_ID) == len(KEYS)
    assert first_clash({k.id: k.key for k in KEYS}) is None


@pytest.mark.parametrize("text, problem", [
    ('[keys]\n"runs.kil" = "ctrl+x"\n', "'runs.kil' is not a key id"),
    ('[keys]\n"runs.stop" = "r"\n', "runs.stop and runs.resume both use 'r'"),
    ('[keys]\n"runs.stop" = "j"\n', "list.down and runs.stop both use 'j'"),
    ('[keys]\n"runs.stop" = ""\n', "runs.stop = '': expected Textual key names"),
    ('[keys]\n"runs.stop" = 3\n', "runs.stop = 3: expected Textual key names"),
    ('[notifications]\nbell = "no"\n', "bell = 'no': expected true or false"),
    ('[notifications]\nsound = true\n', "unknown setting 'sound'"),
    ('[colours]\n', "unknown section [colours]"),
    ('[keys\n', "not a readable TOML file"),
    ('[keys]\n"runs.kill" = "ctrl+banana"\n', "runs.kill = 'ctrl+banana': 'banana' is not a key name"),
    ('[keys]\n"runs.kill" = "Tag"\n', "runs.kill = 'Tag': 'Tag' is not a key name"),
    ('[keys]\n"runs.kill" = "x,cmd+k"\n', "runs.kill = 'x,cmd+k': 'cmd' is not a modifier"),
])
def test_a_bad_settings_file_is_one_clear_error(tmp_path, text, problem):
    path = tmp_path / "tui.toml"
    path.write_text(text)
    with pytest.raises(BadInput) as err:
        load_settings(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_the_readme_example_settings_file_loads_as_written(tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("```toml\n[keys]", 1)[1].split("```", 1)[0]
    path = tmp_path / "tui.toml"
    path.write_text("[keys]" + example)
    settings = load_settings(path)
    assert settings.key_of("list.down") == "j,ctrl+n" and settings.key_of("runs.kill") == "ctrl+x"


def test_key_names_agree_with_textual_and_every_default_is_one():
    from textual.keys import _character_to_key

    assert {_character_to_key(chr(c)) for c in range(33, 127) if not chr(c).isalnum()} == PUNCTUATION_KEYS
    assert [n for k in KEYS for n in k.key.split(",") if unknown_key(n)] == []


def test_settings_file_remaps_keys_and_switches_the_bell(tmp_path):
    path = tmp_path / "tui.toml"
    path.write_text('[keys]\n"runs.kill" = "ctrl+x"\n"list.down" = "j,ctrl+j"\n[notifications]\nbell = false\n')
    settings = load_settings(path)
    assert settings == TuiSettings(keys={"runs.kill": "ctrl+x", "list.down": "j,ctrl+j"}, bell=False)
    assert settings.key_of("runs.kill") == "ctrl+x" and settings.key_of("runs.stop") == "s"
    assert load_settings(tmp_path / "absent.toml") == TuiSettings()


def test_cli_keys_lists_remaps_and_refuses_a_bad_file(tmp_path, monkeypatch, cli):
    path = tmp_path / "tui.toml"
    monkeypatch.setenv("DDPM_TUI_CONFIG", str(path))
    path.write_text('[keys]\n"runs.kill" = "ctrl+x"\n')
    result = cli("keys")
    assert result.code == 0
    assert any(line.split()[:2] == ["runs.kill", "*ctrl+x"] for line in result.out.splitlines())
    path.write_text('[keys]\n"runs.kill" = "q"\n')
    result = cli("keys")
    assert result.code == 2
    assert result.err.strip() == f"error: {path}: [keys] app.quit and runs.kill both use 'q' on the Runs table screen"


def test_a_key_textual_cannot_deliver_stops_ddpm_tui_before_the_tui_starts(tmp_path, monkeypatch, cli):
    def tui_started(*args, **kwargs):
        raise AssertionError("the TUI started with runs.kill on a key no terminal sends")

    path = tmp_path / "tui.toml"
    path.write_text('[keys]\n"runs.kill" = "ctrl+banana"\n')
    monkeypatch.setenv("DDPM_TUI_CONFIG", str(path))
    monkeypatch.setattr("ddpm_tui.cli.interactive.open_tui", tui_started)
    result = cli()
    assert result.code == 2 and result.out == ""
    assert result.err.strip() == (f"error: {path}: [keys] runs.kill = 'ctrl+banana': 'banana' is not a key name "
                                  "(a character such as \"j\" or \"G\", or a name such as \"enter\", \"f5\", "
                                  "\"question_mark\")")


# ---- the app ---------------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_remapped_key_acts_and_the_old_one_no_longer_does(tui_app):
    tui_app.settings = TuiSettings(keys={"runs.kill": "ctrl+x"})
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("ctrl+k")
        await pilot.pause()  # what the key did, done
        assert not isinstance(pilot.app.screen, ConfirmDialog)
        await pilot.press("ctrl+x")
        dialog = await wait_screen(pilot, ConfirmDialog)
        assert dialog.question.startswith("Kill run(s) 1 'seed-1'?")
        assert [type(s) for s in pilot.app.screen_stack].count(ConfirmDialog) == 1, "^K asked too, late"
        await pilot.press("n")


@pytest.mark.asyncio
async def test_kill_is_off_the_movement_keys_and_confirms_naming_the_run(tui_app):
    async with tui_app.run_test(size=(120, 30)) as pilot:
        table = await rows_loaded(pilot)
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1 and not isinstance(pilot.app.screen, ConfirmDialog)
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("G")
        assert table.cursor_row == 2
        await pilot.press("ctrl+k")
        dialog = await wait_screen(pilot, ConfirmDialog)
        assert "3 'seed-3'" in dialog.question
        await pilot.press("n")
    assert queries.get_run(tui_app.lab.store, 3).status == "queued"


@pytest.mark.asyncio
async def test_the_palette_offers_every_view_and_the_screens_actions(tui_app):
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await rows_loaded(pilot)
        titles = {c.title: c.help for c in pilot.app.get_system_commands(pilot.app.screen)}
        for title in ("Runs view", "Launch view", "Ablation view", "Compare view", "Blind test view",
                      "Kill", "Stop", "Resume", "Filter", "Evaluate runs", "Sample a grid", "Tag", "Note"):
            assert title in titles, title
        assert titles["Kill"] == "Runs table: key ^K"
        await pilot.press("ctrl+p")
        palette = await wait_screen(pilot, CommandPalette)
        await pilot.press(*"launch view")
        hits = palette.query_one(CommandList)
        await wait_for(pilot, lambda: hits.option_count == 1 and "Launch view" in str(hits.options[0].prompt),
                       what="the palette's one match")
        await pilot.press("enter")
        await wait_screen(pilot, LaunchScreen)


@pytest.mark.asyncio
async def test_help_groups_the_keys_app_first_and_fits_80x24(tui_app):
    async with tui_app.run_test(size=(80, 24)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("question_mark")
        screen = await wait_screen(pilot, HelpScreen)
        dialog = screen.query_one(".help")
        await wait_for(pilot, lambda: dialog.region.height > 0, what="the help laid out")
        text = str(screen.query_one("#help-text").render())
        lines = text.splitlines()
        assert lines[2].startswith("Everywhere") and "Runs table" in text and "Lists (runs, sweeps)" in text
        for words in ("Quit", "Kill", "^K", "Filter", "Runs view", "Down"):
            assert words in text, words
        assert max(len(line) for line in lines) <= 76 - 4
        assert dialog.region.height <= 24 and dialog.max_scroll_y == 0  # all of it in view, no scrolling


@pytest.mark.asyncio
async def test_typing_in_a_form_field_never_switches_views(tui_app):
    async with tui_app.run_test(size=(120, 40)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("2")
        screen = await wait_screen(pilot, LaunchScreen)
        field = screen.query(Input).first()
        field.focus()
        field.value = ""
        await pilot.press("1", "question_mark", "6", "q")
        await wait_for(pilot, lambda: field.value == "1?6q", what="the typed text", timeout=10)
        assert pilot.app.screen is screen and field.value == "1?6q"


@pytest.mark.asyncio
async def test_function_keys_switch_views_from_a_text_field_and_a_launch_leaves_the_fields(tui_app):
    async with tui_app.run_test(size=(80, 24)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("2")
        screen = await wait_screen(pilot, LaunchScreen)
        field = screen.query_one("#opt-shuffle_window", Input)
        field.focus()
        await pilot.press("f3")
        await wait_screen(pilot, AblationScreen)
        await pilot.press("f2")
        assert await wait_screen(pilot, LaunchScreen) is screen and field.has_focus
        screen.launched(1, queue=True)  # what a finished launch does: back to the runs view
        await wait_screen(pilot, RunsScreen)
        await pilot.press("2")
        await wait_screen(pilot, LaunchScreen)
        await pilot.press("3")  # the focus left the fields: digits switch views again
        await wait_screen(pilot, AblationScreen)


@pytest.mark.asyncio
async def test_the_run_page_tabs_have_keys_palette_entries_and_help(tui_app):
    async with tui_app.run_test(size=(80, 24)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        tabs = screen.query_one("#detail-tabs", TabbedContent)
        for key, tab in (("C", "tab-checkpoints"), ("N", "tab-notes"), ("O", "tab-config"), ("H", "tab-history"),
                         ("L", "tab-log")):
            await pilot.press(key)
            assert tabs.active == tab, key
        assert screen.query_one("#detail-log").has_focus
        titles = {c.title for c in pilot.app.get_system_commands(screen)}
        assert {"Log tab", "Checkpoints tab", "Notes tab", "Config (options) tab", "History tab"} <= titles
        await pilot.press("question_mark")
        help_text = str((await wait_screen(pilot, HelpScreen)).query_one("#help-text").render())
        assert "C         Checkpoints tab" in help_text and "N         Notes tab" in help_text


@pytest.mark.asyncio
async def test_a_run_that_ends_is_announced_with_a_toast_and_the_bell(tui_app, monkeypatch):
    bells = []
    monkeypatch.setattr(tui_app, "bell", lambda: bells.append(1))
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await rows_loaded(pilot)
        store = tui_app.lab.store
        queries.update_run(store, 3, status="failed", exit_reason="loss is NaN")
        await wait_for(pilot, lambda: any("run 3 'seed-3' failed: loss is NaN" == n.message
                                          for n in pilot.app._notifications), what="failure toast")
        assert bells == [1]
        [toast] = [n for n in pilot.app._notifications if "seed-3" in n.message]
        assert toast.severity == "error"


@pytest.mark.asyncio
async def test_the_bell_can_be_switched_off(tui_app, monkeypatch):
    bells = []
    tui_app.settings = TuiSettings(bell=False)
    monkeypatch.setattr(tui_app, "bell", lambda: bells.append(1))
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await rows_loaded(pilot)
        queries.update_run(tui_app.lab.store, 3, status="finished", exit_reason="reached step 100")
        await wait_for(pilot, lambda: any("run 3 'seed-3' finished" in n.message for n in pilot.app._notifications),
                       what="finish toast")
        assert bells == []


@pytest.mark.asyncio
async def test_a_slow_action_says_at_once_that_it_is_working(tui_app):
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: any(n.message.startswith("run 1: sampling a 4x4 grid")
                                          for n in pilot.app._notifications), what="working toast")
        await wait_for(pilot, lambda: any(n.severity == "error" and "sample 1" in n.message
                                          for n in pilot.app._notifications), what="the sampling error")


@pytest.mark.asyncio
async def test_columns_grow_with_their_content_and_the_sort_order_is_always_shown(tui_app):
    async with tui_app.run_test(size=(200, 30)) as pilot:
        table = await rows_loaded(pilot)
        status = pilot.app.screen.query_one("#runs-status")
        assert "[sort id ↑]" in str(status.render())
        long_name = "a-much-longer-run-name-than-before-" + "x" * 10
        queries.update_run(tui_app.lab.store, 2, name=long_name)
        await wait_for(pilot, lambda: str(table.get_row("2")[1]) == long_name, what="the new name")
        await wait_for(pilot, lambda: table.columns["name"].get_render_width(table) >= len(long_name),
                       what="the name column to grow", timeout=10)
        assert table.columns["name"].get_render_width(table) >= len(long_name)
        await pilot.press("O")
        assert "[sort id ↓]" in str(status.render())


@pytest.mark.asyncio
async def test_the_footer_keeps_quit_and_help_in_80_columns(tui_app):
    from textual.widgets._footer import FooterKey

    async with tui_app.run_test(size=(80, 24)) as pilot:
        await rows_loaded(pilot)

        def keys_in_view():
            return [k.key for k in pilot.app.screen.query(FooterKey) if k.region.width and k.region.right <= 80]

        await wait_for(pilot, lambda: keys_in_view()[:2] == ["q", "question_mark"], what="q and ? in the footer",
                       timeout=10)
        assert keys_in_view()[:2] == ["q", "question_mark"]


@pytest.mark.asyncio
async def test_resuming_a_run_without_a_checkpoint_asks_before_restarting_from_step_0(tui_app, monkeypatch):
    started = []
    monkeypatch.setattr("core.runner.lifecycle.start_process", lambda store, run_id, *a: started.append(run_id))
    async with tui_app.run_test(size=(120, 30)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("j", "r")  # seed-2: stopped at step 40, no checkpoint
        dialog = await wait_screen(pilot, ConfirmDialog)
        assert dialog.question == "Run 2 'seed-2' has no checkpoint to continue from. Restart it from step 0?"
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, ConfirmDialog), what="the dialog to close")
        await pilot.app.workers.wait_for_complete()  # whatever "no" might have started has ended
        assert queries.get_run(tui_app.lab.store, 2).status == "stopped" and started == []
        await pilot.press("r")
        await wait_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_for(pilot, lambda: started == [2], what="the restart")
        assert queries.get_run(tui_app.lab.store, 2).status == "running"


@pytest.mark.asyncio
async def test_tags_show_in_the_table_notes_on_the_run_page_and_prompts_name_the_run(tui_app):
    from ddpm_tui.tui.screens.detail import RunDetailScreen
    from ddpm_tui.tui.screens.dialogs import TextPrompt

    store = tui_app.lab.store
    queries.add_tags(store, 1, ["baseline", "cosine"])
    queries.add_note(store, 1, "colours look right [b]at[/b] step 100")
    async with tui_app.run_test(size=(160, 40)) as pilot:
        table = await rows_loaded(pilot)
        await wait_for(pilot, lambda: str(table.get_row("1")[2]) == "baseline cosine", what="the tags column")
        await pilot.press("t")
        prompt = await wait_screen(pilot, TextPrompt)
        assert prompt.title_text == "Tags to add to run(s) 1 'seed-1' (space separated)"
        await pilot.press("escape")
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        notes = screen.query_one("#detail-notes")
        await wait_for(pilot, lambda: "colours look right [b]at[/b] step 100" in str(notes.render()), what="notes")
        assert "tags: baseline cosine" in str(screen.query_one("#detail-status").render())


@pytest.mark.asyncio
async def test_the_log_tail_searches_and_stops_and_resumes_following(tui_app):
    from textual.widgets import Log

    from ddpm_tui.tui.screens.detail import RunDetailScreen
    from ddpm_tui.tui.screens.dialogs import TextPrompt

    log_file = tui_app.lab.runs_dir / "1" / "train.log"
    log_file.write_text("".join(f"step {i} loss {1 / i:.4f}\n" for i in range(1, 300)) + "checkpoint ckpt-300\n"
                        + "".join(f"step {i}\n" for i in range(300, 400)))
    async with tui_app.run_test(size=(120, 40)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        log = screen.query_one("#detail-log", Log)
        await wait_for(pilot, lambda: log.line_count >= 400, what="the log")
        await pilot.press("slash")
        await wait_screen(pilot, TextPrompt)
        await pilot.press(*"CHECKPOINT", "enter")
        await wait_for(pilot, lambda: screen.log_match == 299, what="the match")
        assert not log.auto_scroll and log.scroll_offset.y <= 299 < log.scroll_offset.y + log.size.height
        await pilot.press("n")  # the only match: wraps to itself
        assert screen.log_match == 299
        await pilot.press("f")
        assert log.auto_scroll


@pytest.mark.asyncio
async def test_the_sample_browser_steps_through_grids_and_zooms_one(tui_app):
    import imageio.v3 as iio
    import numpy as np

    from ddpm_tui.tui.screens.detail import RunDetailScreen
    from ddpm_tui.tui.widgets.sample_view import SampleView, ZoomedGrid

    run_dir = tui_app.lab.runs_dir / "1"
    for step in (200, 300):
        path = run_dir / "samples" / f"step-{step:08d}.png"
        iio.imwrite(path, np.full((50, 50, 3), step // 2, np.uint8))
        queries.add_artifact(tui_app.lab.store, 1, "samples", str(path), step)
    async with tui_app.run_test(size=(120, 40)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        view = screen.query_one(SampleView)
        caption = view.query_one("#sample-caption")
        await wait_for(pilot, lambda: "step 300 (newest), 3 of 3" in str(caption.render()), what="the newest grid")
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert "step 100, 1 of 3" in str(caption.render()) and view.path.name == "step-00000100.png"
        await pilot.press("left_square_bracket")  # stays at the oldest
        assert view.path.name == "step-00000100.png"
        await pilot.press("right_square_bracket")
        assert "step 200, 2 of 3" in str(caption.render())
        await pilot.press("z")
        zoom = await wait_screen(pilot, ZoomedGrid)
        assert zoom.path.name == "step-00000200.png" and "step 200" in zoom.caption
        image = zoom.query_one("#zoomed-image")
        panel = view.query_one("#sample-image")
        await wait_for(pilot, lambda: image.region.height > panel.region.height, what="the zoomed grid laid out",
                       timeout=10)
        assert image.region.height > panel.region.height  # bigger than the panel's
        assert zoom.styles.background.a == 1  # opaque: the page does not show beside the grid
        await pilot.press("escape")
        await pilot.press("right_square_bracket")
        assert "(newest), 3 of 3" in str(caption.render())


@pytest.mark.asyncio
async def test_checkpoints_tab_picks_the_checkpoint_that_p_samples(tui_app, monkeypatch):
    from textual.widgets import DataTable

    from ddpm_tui.tui.screens.detail import RunDetailScreen

    ckpt_dir = tui_app.lab.runs_dir / "1" / "checkpoints"
    ckpt_dir.mkdir()
    for step in (50, 100):
        (ckpt_dir / f"ckpt-{step:08d}.pt").write_bytes(b"x" * 2**20)
    sampled = []
    monkeypatch.setattr(tui_app.lab, "sample", lambda run_id, out, checkpoint=None: sampled.append(checkpoint))
    async with tui_app.run_test(size=(140, 40)) as pilot:
        await rows_loaded(pilot)
        await pilot.press("enter")
        screen = await wait_screen(pilot, RunDetailScreen)
        table = screen.query_one("#detail-checkpoints", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="two checkpoints")
        assert [str(c) for c in table.get_row("100")][:2] == ["100", "1.0 MiB"]
        assert str(table.get_row("100")[3]).startswith("●") and not str(table.get_row("50")[3])
        screen.query_one("#detail-tabs").active = "tab-checkpoints"
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: str(table.get_row("50")[3]).startswith("●"), what="the choice")
        await pilot.press("p")
        await wait_for(pilot, lambda: sampled == [50], what="a sample of step 50")


@pytest.mark.asyncio
async def test_a_failing_background_read_is_one_toast_not_a_crash_nor_a_flood(tui_app, monkeypatch):
    from ddpm_tui.tui.screens.detail import RunDetailScreen

    async with tui_app.run_test(size=(120, 30)) as pilot:
        await rows_loaded(pilot)

        reads = []

        def locked(run_id):
            reads.append(run_id)
            raise RuntimeError("database is locked")

        monkeypatch.setattr(tui_app.lab, "metric_keys", locked)
        await pilot.press("enter")
        await wait_screen(pilot, RunDetailScreen)
        # three more refresh ticks fail the same way (each reported before the next read starts)
        await wait_for(pilot, lambda: len(reads) >= 4, what="four failed reads", timeout=30)
        toasts = [n.message for n in pilot.app._notifications if n.severity == "error"]
        assert toasts == ["reading run 1: database is locked"]
        assert isinstance(pilot.app.screen, RunDetailScreen)
