"""Every key of the TUI in one registry, each with an id that a user's settings file can remap.

    # ~/.config/ddpm-tui/tui.toml (or the file named by DDPM_TUI_CONFIG)
    [keys]
    "runs.kill" = "ctrl+x"          # Textual key names; "a,b" binds both; `ddpm-tui keys` lists the ids
    [notifications]
    bell = false                     # the terminal bell on a run's end (default true)

Pure data: the CLI lists and checks keys without importing Textual; `bindings()` builds Textual's
Binding objects for a screen.

The views are on `1`-`6` and also on `F1`-`F6`: a digit typed in a text field (the launch form, the
ablation grid, the blind test's run id) is text, so there the function keys switch views.
"""

from __future__ import annotations

import os
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BadInput

CONFIG_ENV = "DDPM_TUI_CONFIG"


@dataclass(frozen=True)
class Key:
    id: str  # "<scope>.<name>"
    key: str  # Textual key names, comma-separated alternatives
    action: str
    description: str
    show: bool = True  # in the footer
    display: str | None = None

    @property
    def scope(self) -> str:
        return self.id.split(".", 1)[0]


SCOPES = {
    "app": "Everywhere", "list": "Lists (runs, sweeps)", "runs": "Runs table", "run": "Run page",
    "chart": "Charts", "compare": "Compare", "launch": "Launch form", "ablation": "Ablation",
    "blind": "Blind test", "gpus": "Machine",
}

KEYS: tuple[Key, ...] = (
    Key("app.quit", "q", "quit", "Quit"),
    Key("app.help", "question_mark", "help", "Help", display="?"),
    Key("app.runs", "1,f1", "switch_mode('runs')", "Runs view", show=False, display="1/F1"),
    Key("app.launch", "2,f2", "switch_mode('launch')", "Launch view", show=False, display="2/F2"),
    Key("app.ablation", "3,f3", "switch_mode('ablation')", "Ablation view", show=False, display="3/F3"),
    Key("app.compare", "4,f4", "switch_mode('compare')", "Compare view", show=False, display="4/F4"),
    Key("app.blind", "5,f5", "switch_mode('blind')", "Blind test view", show=False, display="5/F5"),
    Key("app.gpus", "6,f6", "switch_mode('gpus')", "Machine view", show=False, display="6/F6"),
    Key("list.down", "j", "cursor_down", "Down", show=False),
    Key("list.up", "k", "cursor_up", "Up", show=False),
    Key("list.top", "g", "scroll_top", "First row", show=False),
    Key("list.bottom", "G", "scroll_bottom", "Last row", show=False),
    Key("runs.open", "enter", "open", "Open"),
    Key("runs.select", "space", "toggle_select", "Select"),
    Key("runs.filter", "slash", "filter", "Filter", display="/"),
    Key("runs.sort", "o", "cycle_sort", "Sort"),
    Key("runs.reverse", "O", "reverse_sort", "Reverse sort", show=False),
    Key("runs.stop", "s", "stop", "Stop"),
    Key("runs.kill", "ctrl+k", "kill", "Kill", display="^K"),
    Key("runs.resume", "r", "resume", "Resume"),
    Key("runs.delete", "x", "delete", "Delete"),
    Key("runs.tag", "t", "tag", "Tag", show=False),
    Key("runs.note", "n", "note", "Note", show=False),
    Key("runs.sample", "p", "sample", "Sample a grid", show=False),
    Key("runs.duplicate", "d", "duplicate", "Duplicate", show=False),
    Key("runs.compare", "c", "compare", "Compare", show=False),
    Key("runs.worker", "w", "worker", "Start worker", show=False),
    Key("runs.evaluate", "e", "evaluate", "Evaluate runs", show=False),
    Key("runs.clear_filter", "escape", "clear_filter", "Clear filter", show=False),
    Key("run.back", "escape", "app.pop_screen", "Back"),
    Key("run.stop", "s", "stop", "Stop"),
    Key("run.resume", "r", "resume", "Resume"),
    Key("run.kill", "ctrl+k", "kill", "Kill", show=False, display="^K"),
    Key("run.sample", "p", "sample", "Sample a grid", show=False),
    Key("run.duplicate", "d", "duplicate", "Duplicate", show=False),
    Key("run.evaluate", "e", "evaluate", "Evaluate run", show=False),
    Key("run.reverse", "v", "play_reverse", "Reverse process", show=False),
    Key("run.older", "left_square_bracket", "older_grid", "Older sample grid", show=False, display="["),
    Key("run.newer", "right_square_bracket", "newer_grid", "Newer sample grid", show=False, display="]"),
    Key("run.zoom", "z", "zoom", "Zoom the grid", show=False),
    Key("run.extend", "plus", "extend", "Train further", show=False, display="+"),
    Key("run.synth", "y", "synth", "Make a synthetic set", show=False),
    Key("run.search", "slash", "search_log", "Search the log", show=False, display="/"),
    Key("run.next_match", "n", "next_match", "Next log match", show=False),
    Key("run.follow", "f", "toggle_follow", "Follow the log", show=False),
    Key("run.tab_log", "L", "show_tab('tab-log')", "Log tab", show=False),
    Key("run.tab_checkpoints", "C", "show_tab('tab-checkpoints')", "Checkpoints tab", show=False),
    Key("run.tab_notes", "N", "show_tab('tab-notes')", "Notes tab", show=False),
    Key("run.tab_config", "O", "show_tab('tab-config')", "Config (options) tab", show=False),
    Key("run.tab_history", "H", "show_tab('tab-history')", "History tab", show=False),
    Key("chart.smooth", "g", "toggle_smooth", "Smooth"),
    Key("chart.log", "l", "toggle_log", "Log-y"),
    Key("chart.x", "x", "toggle_x", "Step/time"),
    Key("chart.metric", "m", "next_metric", "Metric"),
    Key("compare.back", "escape", "back", "Back"),
    Key("launch.now", "ctrl+l", "launch(False)", "Launch now", display="^L"),
    Key("launch.queue", "ctrl+n", "launch(True)", "Queue", display="^N"),
    Key("launch.reset", "ctrl+r", "reset", "Defaults", display="^R"),
    Key("launch.back", "escape", "app.switch_mode('runs')", "Back"),
    # not ^N as on the launch form: lists are live here, and ^N is a common "next line" remap
    Key("ablation.queue", "ctrl+l", "queue", "Queue grid", display="^L"),
    Key("ablation.worker", "ctrl+t", "worker", "Start worker", display="^T"),
    Key("ablation.tab", "ctrl+g", "toggle_tab", "Grid/Sweeps", display="^G"),
    Key("ablation.back", "escape", "app.switch_mode('runs')", "Back"),
    Key("ablation.sort", "o", "cycle_sort", "Sort", show=False),
    Key("ablation.reverse", "O", "reverse_sort", "Reverse sort", show=False),
    Key("ablation.evaluate", "E", "evaluate_missing", "Evaluate missing", show=False),
    Key("ablation.stop", "S", "stop_sweep", "Stop sweep", show=False),
    Key("ablation.requeue", "R", "requeue_failed", "Requeue failed", show=False),
    Key("blind.class", "g", "start('class')", "Class test"),
    Key("blind.pair", "v", "start('real-vs-generated')", "Real vs generated"),
    Key("blind.run", "e", "edit", "Run id"),
    Key("blind.cancerous", "c", "answer('cancerous')", "Cancerous"),
    Key("blind.non_cancerous", "n", "answer('non_cancerous')", "Non-cancerous"),
    Key("blind.a", "a,left", "answer('a')", "A is generated", display="a/←"),
    Key("blind.b", "b,right", "answer('b')", "B is generated", display="b/→"),
    Key("blind.back", "escape", "back", "Back"),
    Key("gpus.back", "escape", "back", "Back"),
)
BY_ID = {k.id: k for k in KEYS}


def keys_of(scope: str) -> list[Key]:
    return [k for k in KEYS if k.scope == scope]


def bindings(scope: str) -> list:
    """Textual Bindings of a scope, with their ids (App.set_keymap remaps them by id)."""
    from textual.binding import Binding

    return [Binding(k.key, k.action, k.description, show=k.show, key_display=k.display, id=k.id)
            for k in keys_of(scope)]


@dataclass(frozen=True)
class TuiSettings:
    keys: dict[str, str] = field(default_factory=dict)  # key id -> keys, the user's remaps
    bell: bool = True

    def key_of(self, key_id: str) -> str:
        return self.keys.get(key_id, BY_ID[key_id].key)


def settings_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    from platformdirs import user_config_dir

    return Path(user_config_dir("ddpm-tui")) / "tui.toml"


# Scopes whose keys are live at the same time: a remap must not take a key another of them uses.
TOGETHER = {"runs": ("app", "list", "runs"), "run": ("app", "run", "chart"), "compare": ("app", "compare", "chart"),
            "launch": ("app", "launch"), "ablation": ("app", "list", "ablation"), "blind": ("app", "blind"),
            "gpus": ("app", "gpus")}


MODIFIERS = ("ctrl", "alt", "shift", "meta", "super", "hyper")
NAMED_KEYS = frozenset({"escape", "enter", "return", "tab", "space", "backspace", "delete", "insert", "home", "end",
                        "pageup", "pagedown", "up", "down", "left", "right"} | {f"f{n}" for n in range(1, 25)})
# Textual's shorter names for some characters (textual.keys.KEY_NAME_REPLACEMENTS)
CHARACTER_NAME_REPLACEMENTS = {"solidus": "slash", "reverse_solidus": "backslash", "commercial_at": "at",
                               "hyphen_minus": "minus", "plus_sign": "plus", "low_line": "underscore"}


def character_key_name(character: str) -> str:
    """The name Textual gives the key that types `character` ("?" -> "question_mark")."""
    if character.isalnum():
        return character
    name = unicodedata.name(character).lower().replace("-", "_").replace(" ", "_")
    return CHARACTER_NAME_REPLACEMENTS.get(name, name)


# Names of the punctuation keys of a keyboard; other characters are bound by the character itself.
PUNCTUATION_KEYS = frozenset(character_key_name(chr(c)) for c in range(33, 127) if not chr(c).isalnum())


def unknown_key(name: str) -> str | None:
    """Why Textual would never deliver key `name` ("ctrl+banana", "Tag"), or None when it can."""
    *modifiers, base = name.split("+")
    bad = [m for m in modifiers if m not in MODIFIERS]
    if bad:
        return f"{bad[0]!r} is not a modifier (ctrl, alt, shift, meta, super, hyper)"
    if len(set(modifiers)) != len(modifiers):
        return "a modifier is given twice"
    if (len(base) == 1 and base.isprintable() and not base.isspace()) or base in NAMED_KEYS | PUNCTUATION_KEYS:
        return None
    return (f"{base!r} is not a key name (a character such as \"j\" or \"G\", or a name such as \"enter\", "
            "\"f5\", \"question_mark\")")


def load_settings(path: Path | None = None) -> TuiSettings:
    """The user's TUI settings; a missing file means the defaults. Any bad entry is a BadInput
    naming the file, the entry and the value."""
    path = path or settings_path()
    if not path.exists():
        return TuiSettings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: not a readable TOML file ({exc})") from None
    unknown = set(data) - {"keys", "notifications"}
    if unknown:
        raise BadInput(f"{path}: unknown section [{sorted(unknown)[0]}] (known: [keys], [notifications])")
    keys = data.get("keys", {})
    notifications = data.get("notifications", {})
    if not isinstance(keys, dict) or not isinstance(notifications, dict):
        raise BadInput(f"{path}: [keys] and [notifications] must be tables")
    for key_id, value in keys.items():
        if key_id not in BY_ID:
            raise BadInput(f"{path}: [keys] {key_id!r} is not a key id (`ddpm-tui keys` lists them)")
        names = value.split(",") if isinstance(value, str) else []
        if not names or any(not n.strip() or " " in n.strip() for n in names):
            raise BadInput(f"{path}: [keys] {key_id} = {value!r}: expected Textual key names such as \"ctrl+k\" "
                           "or \"j,down\"")
        problem = next(filter(None, (unknown_key(n.strip()) for n in names)), None)
        if problem:
            raise BadInput(f"{path}: [keys] {key_id} = {value!r}: {problem}")
    clash = first_clash({**{k.id: k.key for k in KEYS}, **keys})
    if clash:
        raise BadInput(f"{path}: [keys] {clash}")
    for name, value in notifications.items():
        if name != "bell":
            raise BadInput(f"{path}: [notifications] unknown setting {name!r} (known: bell)")
        if not isinstance(value, bool):
            raise BadInput(f"{path}: [notifications] bell = {value!r}: expected true or false")
    return TuiSettings(keys={k: v.strip() for k, v in keys.items()}, bell=notifications.get("bell", True))


def first_clash(assigned: dict[str, str]) -> str | None:
    """A description of the first key bound to two actions that are live together, or None."""
    for screen, scopes in TOGETHER.items():
        owner: dict[str, str] = {}
        for key_id, keys in assigned.items():
            if BY_ID[key_id].scope not in scopes:
                continue
            for name in (n.strip() for n in keys.split(",")):
                if name in owner and owner[name] != key_id:
                    return f"{owner[name]} and {key_id} both use {name!r} on the {SCOPES[screen]} screen"
                owner[name] = key_id
    return None
