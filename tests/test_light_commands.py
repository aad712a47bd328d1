"""Commands that only read the store answer without importing torch (1.2 s of imports on this 2-core
machine, `python -X importtime`): `runs list`, `runs show`, `export` and the TUI's first screen. A
top-level import of something torch-bound in a module they load (as core.loaded_run once had)
took `runs list --json` on 1,000 runs from 0.5 s to 2.2 s; this finds it by name. Nor do they load the
cluster executors' code when no run of the store is on a cluster (6 M instructions of imports,
BENCHMARKS.md)."""

import subprocess
import sys

import pytest

from conftest import ROOT, seed_store

PROBE = """
import gc
import sys
from ddpm_tui.entry import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
print("COLLECTOR", gc.isenabled(), gc.get_freeze_count() > 10_000)
heavy = sorted(m for m in ("torch", "numpy.linalg", "scipy", "h5py", "core.executors.k8s", "core.executors.slurm")
               if m in sys.modules)
print("HEAVY", ",".join(heavy))
"""


@pytest.mark.parametrize("args", [["runs", "list", "--json"], ["runs", "show", "1"], ["export", "--format", "csv"]],
                         ids=["runs-list", "runs-show", "export"])
def test_reading_commands_do_not_import_torch(tmp_path, args):
    url, _ = seed_store(tmp_path, n_runs=2)
    done = subprocess.run([sys.executable, "-c", PROBE, "--db", url, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    *_, collector, heavy = done.stdout.strip().splitlines()
    assert heavy == "HEAVY", f"{' '.join(args)} imported {heavy.split()[-1]}"
    # the imports were made without the collector, which is on again and no longer scans what they made
    assert collector == "COLLECTOR True True"


def test_the_tui_app_and_its_service_layer_load_without_torch():
    done = subprocess.run([sys.executable, "-c", "import sys; import ddpm_tui.tui.app, core.services.lab; "
                           "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_a_second_command_in_one_process_freezes_nothing_more():
    """Only a module's first import is frozen: later commands leave the collector alone, so the
    garbage they leave is collected as usual."""
    probe = ("import gc, sys\nfreezes = []\nfreeze = gc.freeze\n"
             "gc.freeze = lambda: (freezes.append(1), freeze())\nfrom ddpm_tui.cli import main\n"
             "def run():\n    try:\n        main(sys.argv[1:])\n    except SystemExit as exc:\n        assert not exc.code\n"
             "run()\nafter_one = len(freezes)\nrun()\nprint(after_one, len(freezes), gc.isenabled())")
    done = subprocess.run([sys.executable, "-c", probe, "runs", "list", "--json"], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "DDPM_TUI_DB": "sqlite://"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "1 1 True"  # the service layer's import, once
