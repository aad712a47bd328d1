"""Names, tags, notes, log lines and error texts are data: never markup, never terminal escapes."""

import pytest
from textual.widgets import DataTable, Log, Static

from conftest import seed_store, wait_for, write_pcam
from core.store import Store, queries
from ddpm_tui.tui.app import DdpmApp
from core.services.lab import Lab

MARKUP_NAME = "[/]"
LINK_NAME = "[link=https://evil.example]click[/link]"
ESCAPES = "osc\x1b]8;;https://evil.example\x07link\x1b]8;;\x07 \x1b[2Jclear"


@pytest.fixture
def hostile_app(tmp_path):
    write_pcam(tmp_path / "pcam")
    url, runs_dir = seed_store(tmp_path)
    store = Store(url)
    for run_id, name in ((1, MARKUP_NAME), (2, LINK_NAME), (3, ESCAPES)):
        queries.update_run(store, run_id, name=name)
    queries.update_run(store, 1, exit_reason="failed: [bold]not bold[/bold] \x1b[31mred")
    queries.add_tags(store, 1, ["[b]tag"])
    queries.add_note(store, 1, "note [/] with \x1b]0;title\x07")
    (runs_dir / "1" / "train.log").write_text("plain line\nlog [/] line \x1b[31mred\x1b[0m\n")
    store.close()
    return DdpmApp(Lab(url, runs_dir))


@pytest.mark.asyncio
async def test_hostile_names_render_literally_and_escapes_are_made_visible(hostile_app):
    async with hostile_app.run_test(size=(140, 36)) as pilot:
        table = pilot.app.screen.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3, what="three rows")
        names = [table.get_row_at(i)[1].plain for i in range(3)]
        assert names == [MARKUP_NAME, LINK_NAME, "osc\\x1b]8;;https://evil.example\\x07link\\x1b]8;;\\x07 \\x1b[2Jclear"]
        assert not table.get_row_at(1)[1].spans, "no link, no style: the name is plain text"

        await pilot.press("enter")
        await wait_for(pilot, lambda: pilot.app.screen.query(Log) and pilot.app.screen.query_one(Log).line_count >= 2,
                       what="the log")
        screen = pilot.app.screen
        status = screen.query_one("#detail-status", Static).render()
        assert "[/]" in str(status) and "[bold]not bold[/bold] \\x1b[31mred" in str(status)
        lines = list(screen.query_one(Log).lines)
        assert "log [/] line \\x1b[31mred\\x1b[0m" in lines and not any("\x1b" in line for line in lines)

        pilot.app.report_error("opening [/] run", ValueError("bad [link=x]value[/link] \x1b[5m"))
        await wait_for(pilot, lambda: any("opening [/] run" in n.message for n in pilot.app._notifications),
                       what="the error toast", timeout=10)
        assert pilot.app.is_running
        message = list(pilot.app._notifications)[-1]
        assert "[link=x]value[/link] \\x1b[5m" in message.message and not message.markup
