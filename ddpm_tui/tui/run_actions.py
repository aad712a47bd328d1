"""What the TUI can do to a run: a registry of actions by name, each with the words shown while it
works (for the slow ones) and the function that does it through core.services, in a worker thread."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from core.run_dir import RunDir
from core.services.lab import Lab


@dataclass(frozen=True)
class Given:
    """What the user gave with the action: a text (tags, a note, a step count), a checkpoint step."""

    text: str | None = None
    checkpoint: int | None = None


@dataclass(frozen=True)
class RunAction:
    perform: Callable[[Lab, int | None, Given], str]  # returns the message shown when it is done
    working: str | None = None  # shown at once for actions that take seconds to minutes


def sample(lab: Lab, run_id: int, given: Given) -> str:
    out = RunDir(lab.run(run_id).run_dir).samples / f"tui-{time.strftime('%Y%m%d-%H%M%S')}.png"
    lab.sample(run_id, out, checkpoint=given.checkpoint)
    which = f"step {given.checkpoint}'s checkpoint" if given.checkpoint is not None else "the newest checkpoint"
    return f"run {run_id}: samples of {which} written to {out}"


def delete(lab: Lab, run_id: int, given: Given) -> str:
    lab.delete(run_id)
    return f"run {run_id} deleted"


def tag(lab: Lab, run_id: int, given: Given) -> str:
    lab.tag(run_id, given.text.split())
    return f"run {run_id}: tagged {given.text}"


def note(lab: Lab, run_id: int, given: Given) -> str:
    lab.note(run_id, given.text)
    return f"run {run_id}: note added"


def synth(lab: Lab, run_id: int, given: Given) -> str:
    job = lab.start_synth(run_id, int(given.text), given.checkpoint)
    return (f"run {run_id}: drawing {given.text} labelled patches in the background (pid {job.pid}) into {job.out}; "
            f"`--data` that folder trains on it once whole (log: {job.log})")


def extend(lab: Lab, run_id: int, given: Given) -> str:
    run = lab.extend(run_id, int(given.text))
    return f"run {run_id}: {run.status} again, now to step {run.total_steps}"


RUN_ACTIONS: dict[str, RunAction] = {
    "stop": RunAction(lambda lab, run_id, given: lab.stop(run_id).message),
    "kill": RunAction(lambda lab, run_id, given: lab.kill(run_id).message, "killing: SIGTERM, SIGKILL after 10 s…"),
    "resume": RunAction(lambda lab, run_id, given: f"run {run_id}: {lab.resume(run_id).status}"),
    "restart": RunAction(lambda lab, run_id, given: f"run {run_id}: {lab.resume(run_id, restart=True).status}, "
                                                    "from step 0"),
    "requeue": RunAction(lambda lab, run_id, given: f"run {run_id}: {lab.resume(run_id, queue=True).status} "
                                                    "(a worker picks it up)"),
    "delete": RunAction(delete, "deleting its directory…"),
    "tag": RunAction(tag),
    "note": RunAction(note),
    "sample": RunAction(sample, "sampling a 4x4 grid (DDIM, 50 steps)…"),
    "extend": RunAction(extend),
    "synth": RunAction(synth),
    "worker": RunAction(lambda lab, run_id, given: f"worker started (pid {lab.start_worker()}); "
                                                   "it exits when the queue is empty"),
}
