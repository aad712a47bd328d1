"""The process a detached run executes: `python -m core.runner.execute RUN_ID`.

The store's URL comes from the environment (DDPM_TUI_DB), never from the command line, where `ps`
would show its password to every user of the machine.
"""

from __future__ import annotations

import logging
import os
import sys

from core.errors import BadInput, WorkFailed
from core.locations import STORE_ENV, inherited_store_url


def main(argv: list[str] | None = None) -> int:
    parent = os.getppid()  # before the slow imports: under torchrun, the agent (see exit_with_agent)
    args = sys.argv[1:] if argv is None else argv
    usage = "python -m core.runner.execute RUN_ID"
    if len(args) != 1 or not (args[0].isascii() and args[0].isdigit()):
        print(f"usage: {STORE_ENV}=URL {usage}", file=sys.stderr)
        return 2
    url = inherited_store_url(usage)
    if url is None:
        return 2
    from core.store.db import Store
    from core.runner.run import execute_run

    logging.getLogger("ddpm_tui").addHandler(logging.StreamHandler(sys.stdout))
    try:
        outcome = execute_run(Store(url), int(args[0]), agent_pid=parent)
    except (BadInput, WorkFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if outcome in ("finished", "stopped", "killed") else 1


if __name__ == "__main__":
    sys.exit(main())
