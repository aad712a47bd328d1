"""Command-line options generated from core's TrainConfig, and the global --db/--runs-dir options.

Typer reads a command's signature; these decorators extend it, so every training field is a flag
without being written out a second time.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from core.config import FIELD_TYPES, TrainConfig, flag
from core.locations import (
    DEFAULT_RUNS_DIR,
    DEFAULT_URL,
    RUNS_ENV,
    STORE_ENV,
    runs_dir,
    store_url,
)

METAVARS = {int: "INT", float: "FLOAT", str: "TEXT"}


def _train_parameter(f: dataclasses.Field) -> inspect.Parameter:
    choices = f.metadata.get("choices")
    help_text = f.metadata["help"] + (f" [{'|'.join(map(str, choices))}]" if choices else "")
    help_text += f" (default: {f.default if f.default is not dataclasses.MISSING else '[]'})"
    name, kind = flag(f.name), FIELD_TYPES[f.name]
    if kind is bool:
        annotation = Annotated[Optional[bool], typer.Option(f"--{name}/--no-{name}", help=help_text, show_default=False)]
    elif kind is list:
        annotation = Annotated[Optional[List[str]], typer.Option(f"--{name}", help=help_text, show_default=False)]
    else:  # text, read by core.config.parse_value like every other source of values
        annotation = Annotated[Optional[str], typer.Option(f"--{name}", help=help_text, show_default=False,
                                                           metavar=METAVARS[kind])]
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


@dataclass(frozen=True)
class RootOptions:
    """--db and --runs-dir as given before the command name (`ddpm-tui --db URL runs list`): the
    root command's `ctx.obj`; None where not given."""

    db: str | None = None
    runs_dir: Path | None = None


@dataclass(frozen=True)
class Where:
    """The store URL and runs directory a command works on: its own --db/--runs-dir, else the root's,
    else the environment's, else the defaults."""

    db_url: str
    runs_dir: Path

    def lab(self, create: bool = True):
        """The service layer on this store. Commands that only read or act on existing runs pass
        create=False: they never create a database file (a missing one reads as empty)."""
        from ddpm_tui.entry import imports_uncollected

        with imports_uncollected("core.services.lab"):
            from core.services.lab import Lab  # imported on use: `--help` and `keys` need no store

        return Lab(self.db_url, self.runs_dir, create=create)


def _extend_signature(func, params: list[inspect.Parameter], collect):
    sig = inspect.signature(func)
    names = [p.name for p in params]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        extra = {n: kwargs.pop(n) for n in names if n in kwargs}
        return func(*args, **collect(extra, kwargs), **kwargs)

    keep = [p for p in sig.parameters.values() if p.name not in ("train_values", "where")]
    wrapper.__signature__ = sig.replace(parameters=keep + params)
    return wrapper


def train_options(func):
    """Adds one option per TrainConfig field; the command receives them as `train_values` (dict,
    None for flags not given)."""
    params = [_train_parameter(f) for f in dataclasses.fields(TrainConfig)]
    return _extend_signature(func, params, lambda extra, _: {"train_values": extra})


def sweep_options(func):
    """Like train_options, but every value is text so it can hold a comma list of grid values."""
    params = []
    for f in dataclasses.fields(TrainConfig):
        if FIELD_TYPES[f.name] is list:
            params.append(_train_parameter(f))
            continue
        help_text = f.metadata["help"] + " (comma list to sweep)"
        annotation = Annotated[Optional[str], typer.Option(f"--{flag(f.name)}", help=help_text, show_default=False)]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    return _extend_signature(func, params, lambda extra, _: {"train_values": extra})


def global_options(func):
    """Adds --db and --runs-dir to a command; it receives them, with the root command's, as `where`.
    The root's come from the command's typer.Context: its own parameter of that type where it has
    one (Typer fills only one), else one added here."""
    own_context = next((p.name for p in inspect.signature(func).parameters.values() if p.annotation is typer.Context),
                       None)
    context = own_context or "root_context"
    params = [
        inspect.Parameter("db", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Option("--db", help=f"database URL (env {STORE_ENV}) [default: {DEFAULT_URL}]")]),
        inspect.Parameter("runs_dir", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[Path], typer.Option("--runs-dir", help=f"runs directory (env {RUNS_ENV}) [default: ./{DEFAULT_RUNS_DIR}]")]),
    ]
    if own_context is None:
        params.insert(0, inspect.Parameter(context, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    def collect(extra, kwargs):
        root = (extra.get(context) or kwargs.get(context)).find_root().obj or RootOptions()
        return {"where": Where(store_url(extra.get("db") or root.db), runs_dir(extra.get("runs_dir") or root.runs_dir))}

    return _extend_signature(func, params, collect)
