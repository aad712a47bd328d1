"""One table of bad inputs across every command: each row is a command line a user (or an attacker)
could type, the exit code it must end with, the words its one-line error must hold, and the promise
that nothing already stored changed. Add a row for every new command's flags."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest
from sqlalchemy import create_engine, inspect, text

from conftest import TINY, seed_store, write_pcam


@dataclass(frozen=True)
class Case:
    """`argv` may hold {pcam} (a small PCam folder), {work} (the working directory) and {db} (the
    store's URL). `setup` is "empty" (no store yet) or "seeded" (three runs written directly)."""

    id: str
    argv: list[str]
    code: int
    words: list[str]
    setup: str = "empty"
    env: dict[str, str] = field(default_factory=dict)
    lines: int = 1  # lines on stderr
    files: dict[str, str] = field(default_factory=dict)  # written under the working directory first
    absent: list[str] = field(default_factory=list)  # never on stderr: secrets, raw control characters


K8S = ["launch", "--executor", "k8s", "--image", "img", "--dry-run", "--data", "demo", *TINY]

CASES: list[Case] = [
    # ---- secrets and terminal safety -------------------------------------------------------------
    Case("db-password-in-query", ["--db", "postgresql+psycopg://alice@127.0.0.1:1/runs?password=S3cret", "runs", "list"],
         2, ["cannot open the database", "password=***"], absent=["S3cret"]),
    Case("db-password-in-socket-query", ["runs", "list", "--db", "postgresql+psycopg:///runs?host=/nonexistent&user=a&password=S3cret"],
         2, ["cannot open the database", "password=***"], absent=["S3cret"]),
    Case("db-password-with-at", ["--db", "postgresql+psycopg://alice:S3@cret@127.0.0.1:1/runs", "runs", "list"], 2,
         ["cannot open the database", "alice:***@127.0.0.1"], absent=["cret"]),
    Case("db-password-bad-port", ["--db", "postgresql+psycopg://alice:S3cret@h:5x/runs", "runs", "list"], 2,
         ["not a database URL", "'5x'"], absent=["S3cret"]),
    Case("data-path-with-escapes", ["train", "--data", "{work}/no\x1b]52;c;aGk=\x07\x1b[2J", *TINY], 2,
         ["no\\x1b]52;c;aGk=\\x07\\x1b[2J"], absent=["\x1b", "\x07"]),
    Case("busy-timeout-inf", ["runs", "list"], 2, ["DDPM_TUI_BUSY_TIMEOUT", "'inf'"], env={"DDPM_TUI_BUSY_TIMEOUT": "inf"}),
    Case("busy-timeout-nan", ["runs", "list"], 2, ["DDPM_TUI_BUSY_TIMEOUT", "'nan'"], setup="seeded",
         env={"DDPM_TUI_BUSY_TIMEOUT": "nan"}),
    # ---- unbounded sizes and half-stored work ----------------------------------------------------
    Case("ablate-seeds-unbounded", ["ablate", "--data", "{pcam}", *TINY, "--seeds", "100000"], 2,
         ["too many runs", "100000", "more than 512", "--yes-large"]),
    Case("ablate-grid-unbounded", ["ablate", "--data", "{pcam}", *TINY, "--lr", ",".join(f"{i}e-5" for i in range(1, 40)),
                                   "--seed", "0", "--seeds", "20"], 2, ["the grid is 780 (39 configurations x --seeds 20)"]),
    Case("ablate-eval-n-alone", ["ablate", "--data", "{pcam}", *TINY, "--eval-n", "8"], 2,
         ["--eval-n goes with --eval-on-finish"]),
    Case("ablate-eval-nll-timesteps-alone", ["ablate", "--data", "{pcam}", *TINY, "--eval-nll-timesteps", "10"], 2,
         ["--eval-nll-timesteps goes with --eval-on-finish"]),
    Case("train-nproc-above-cpu-cores", ["train", "--data", "{pcam}", *TINY, "--nproc", "64"], 2,
         ["--nproc 64", "CPU core(s) are usable here"]),
    Case("classifier-train-batch-unbounded", ["classifier", "train", "--data", "{pcam}", "--batch-size", "1000000000",
                                              "--device", "cpu"], 2,
         ["classifier training (--batch-size 1000000000 at 32 px", "needs about", "lower --batch-size"]),
    # the folder was found unwritable after minutes of sampling (OSError, traceback, the PNG's artifact stored)
    Case("sample-gif-under-a-file", ["sample", "1", "--out", "{work}/g.png", "--gif", "{work}/afile/r.gif"], 2,
         ["--gif", "afile is a file, not a directory"], setup="seeded", files={"afile": "x"}),
    Case("data-demo-onto-a-file", ["data", "demo", "{work}/afile"], 2, ["data demo", "afile: is a file, not a directory"],
         files={"afile": "x"}),
    Case("ablate-sweep-name-too-long", ["ablate", "--data", "{pcam}", *TINY, "--sweep-name", "x" * 195], 2,
         ["--sweep-name: 195 characters", "at most 200"]),
    # ---- values that must be refused ---------------------------------------------------------------
    # --device reached torch.device ('mps' is a device torch knows) and failed mid-work with exit 1
    Case("sample-device-mps", ["sample", "1", "--out", "{work}/g.png", "--device", "mps"], 2,
         ["--device: unknown value 'mps'"], setup="seeded"),
    Case("eval-device-bogus", ["eval", "1", "--device", "bogus"], 2, ["--device: unknown value 'bogus'"], setup="seeded"),
    Case("classifier-train-device-mps", ["classifier", "train", "--data", "{pcam}", "--device", "mps"], 2,
         ["--device: unknown value 'mps'"]),
    # worker options were taken as given, and `--gpus abc` started the queued run 3
    Case("worker-slots-zero", ["worker", "--slots", "0", "--until-empty"], 2, ["--slots", "got 0"], setup="seeded"),
    Case("worker-slots-huge", ["worker", "--slots", "1000000000000", "--until-empty"], 2,
         ["--slots: must be between 1 and", "1000000000000"], setup="seeded"),
    Case("worker-gpus-word", ["worker", "--gpus", "abc", "--until-empty"], 2, ["--gpus: 'abc'", "not a GPU index"],
         setup="seeded"),
    Case("worker-gpus-negative", ["worker", "--gpus", "-1", "--until-empty"], 2, ["--gpus: '-1'"], setup="seeded"),
    Case("worker-gpus-twice", ["worker", "--gpus", "0,0", "--until-empty"], 2, ["--gpus: GPU 0 is given twice"],
         setup="seeded"),
    Case("worker-gpus-empty-group", ["worker", "--gpus", "0;;1", "--until-empty"], 2, ["--gpus: ''", "'0;;1'"],
         setup="seeded"),
    Case("worker-gpus-empty", ["worker", "--gpus", "", "--until-empty"], 2, ["--gpus: ''"], setup="seeded"),
    *(Case(f"worker-poll-{value}", ["worker", "--poll", value, "--until-empty"], 2, ["--poll", f"got {value}"],
           setup="seeded") for value in ("0", "-1", "nan", "inf")),
    # an empty item was dropped ('1,,2' trained as 1,2); a TOML setting one key twice kept the last
    Case("train-dim-mults-empty-item", ["train", "--data", "{pcam}", *TINY, "--dim-mults", "1,,2"], 2,
         ["--dim-mults", "without an empty item", "'1,,2'"]),
    Case("train-config-key-twice", ["train", "--data", "{pcam}", "--config", "{work}/c.toml"], 2,
         ["c.toml: keys 'dim_mults' and 'dim-mults' both set dim_mults"],
         files={"c.toml": 'dim_mults = "1,2"\ndim-mults = "1,2,4"\n'}),
    Case("train-config-dim-mults-empty-item", ["train", "--data", "{pcam}", "--config", "{work}/c.toml"], 2,
         ["c.toml: key 'dim-mults'", "'1,2,'"], files={"c.toml": 'dim-mults = "1,2,"\n'}),
    # above T the estimate silently became the exact bound; the train split is not held out
    Case("eval-nll-timesteps-above-t", ["eval", "1", "--nll-timesteps", "1001"], 2,
         ["--nll-timesteps 1001", "the 1000 diffusion steps of run 1"], setup="seeded"),
    Case("eval-split-train", ["eval", "1", "--split", "train"], 2, ["--split: 'train' is not a held-out split"],
         setup="seeded"),
    Case("ablate-eval-nll-timesteps-above-t", ["ablate", "--data", "{pcam}", *TINY, "--eval-on-finish", "nll",
                                               "--eval-nll-timesteps", "51"], 2, ["--eval-nll-timesteps 51", "50 diffusion steps"],
         setup="seeded"),
    # int() took '0_1' as 1 and '٣' (Arabic-Indic three) as 3: `runs rm ٣ -y` deleted run 3
    Case("runs-rm-arabic-indic-digit", ["runs", "rm", "\u0663", "-y"], 2, ["run id must be a number", "'\u0663'"],
         setup="seeded"),
    Case("runs-rm-underscore", ["runs", "rm", "0_1", "-y"], 2, ["run id must be a number", "'0_1'"], setup="seeded"),
    Case("runs-show-fullwidth-digit", ["runs", "show", "\uff11"], 2, ["run id must be a number"], setup="seeded"),
    Case("train-resume-underscore", ["train", "--resume", "0_2"], 2, ["run id must be a number", "'0_2'"],
         setup="seeded"),
    Case("sample-run-id-signed", ["sample", "+1", "--out", "{work}/g.png"], 2, ["run id must be a number", "'+1'"],
         setup="seeded"),
    Case("runs-list-sweep-underscore", ["runs", "list", "--sweep", "0_1"], 2, ["sweep id must be a number", "'0_1'"],
         setup="seeded"),
    Case("export-of-sweep-arabic-indic-digit", ["export", "--of-sweep", "\u0661"], 2, ["sweep id must be a number"],
         setup="seeded"),
    # --tail 0 printed the whole log ([-0:]), -1 all but its first line
    *(Case(f"runs-logs-tail-{value}", ["runs", "logs", "1", "--tail", value], 2,
           ["--tail: must be between 1 and", f"got {value}"], setup="seeded") for value in ("0", "-1")),
    # the message named --max-steps 3000000100, a value nobody typed
    Case("runs-extend-steps-huge", ["runs", "extend", "1", "--steps", "3000000000"], 2,
         ["--steps: must be between 1 and 2147483647, got 3000000000"], setup="seeded"),
    Case("runs-extend-steps-past-limit", ["runs", "extend", "1", "--steps", "2147483600"], 2,
         ["--steps 2147483600: run 1 would train to step 2147483700", "at most 2147483547 more"], setup="seeded"),
    # ---- exit codes -------------------------------------------------------------------------------
    # without a terminal the question was read from a closed stdin: "aborted", exit 130
    Case("runs-rm-without-terminal", ["runs", "rm", "1"], 2, ["runs rm 1", "use -y"], setup="seeded"),
    # ---- first use ---------------------------------------------------------------------------------
    # the launch form's numeric fields had no upper limit (a stray "3456" typed into one was accepted)
    Case("train-shuffle-window-too-large", ["train", "--data", "{pcam}", *TINY, "--shuffle-window", "8345633"], 2,
         ["--shuffle-window: 8345633 is too large (at most 512"]),
    Case("launch-dim-too-large", ["launch", "--data", "{pcam}", *TINY, "--dim", "4096"], 2,
         ["--dim: 4096 is too large (at most 1024"]),
    Case("train-res-blocks-too-large", ["train", "--data", "{pcam}", *TINY, "--res-blocks", "100"], 2,
         ["--res-blocks: 100 is too large (at most 16"]),
    # the sampler names come from the registry (core/samplers.py), dpm++ among them
    Case("sample-unknown-sampler", ["sample", "1", "--sampler", "euler", "--out", "{work}/g.png"], 2,
         ["--sampler: unknown value 'euler'", "ddpm, ddim, dpm++"], setup="seeded"),
    Case("eval-unknown-sampler", ["eval", "1", "--metrics", "ssim", "--sampler", "dpm2"], 2,
         ["--sampler: unknown value 'dpm2'", "ddpm, ddim, dpm++"], setup="seeded"),
    # --eta was silently ignored by the samplers it does not apply to
    Case("sample-eta-without-ddim", ["sample", "1", "--sampler", "dpm++", "--eta", "0.5", "--out", "{work}/g.png"], 2,
         ["--eta 0.5: --sampler dpm++ has no eta (it applies to ddim)"], setup="seeded"),
    # ---- statistics ---------------------------------------------------------------------------------
    Case("rank-values-missing-file", ["rank", "--values", "{work}/nope.csv"], 2, ["--values", "nope.csv: no such file"]),
    Case("rank-values-wrong-suffix", ["rank", "--values", "{work}/v.txt"], 2, ["v.txt: expected a .csv or .json"],
         files={"v.txt": "configuration,seed,value\n"}),
    Case("rank-values-no-value-column", ["rank", "--values", "{work}/v.csv"], 2, ["v.csv: no value column"],
         files={"v.csv": "configuration,seed,score\na,0,1\n"}),
    Case("rank-values-not-a-number", ["rank", "--values", "{work}/v.csv"], 2,
         ["v.csv row 2, field value: 'abc' is not a number"], files={"v.csv": "configuration,seed,value\na,0,1\na,1,abc\n"}),
    Case("rank-values-empty-configuration", ["rank", "--values", "{work}/v.csv"], 2,
         ["v.csv row 1, field configuration: missing"], files={"v.csv": "configuration,seed,value\n,0,1\n"}),
    Case("rank-values-duplicate-seed", ["rank", "--values", "{work}/v.csv"], 2,
         ["v.csv row 2, field seed: configuration 'a' seed '0' already given in row 1"],
         files={"v.csv": "configuration,seed,value\na,0,1\na,0,2\n"}),
    Case("rank-values-bad-json", ["rank", "--values", "{work}/v.json"], 2, ["v.json: not valid JSON"],
         files={"v.json": "[{\"configuration\": \"a\","}),
    Case("rank-values-json-not-a-list", ["rank", "--values", "{work}/v.json"], 2, ["v.json: expected a JSON list"],
         files={"v.json": "{\"configuration\": \"a\"}"}),
    Case("rank-values-json-value-null", ["rank", "--values", "{work}/v.json"], 2,
         ["v.json row 1, field value: missing"], files={"v.json": "[{\"configuration\": \"a\", \"seed\": 0, \"value\": null}]"}),
    Case("rank-values-only-nan", ["rank", "--values", "{work}/v.csv"], 2, ["v.csv: no finite values to rank (2 left out)"],
         files={"v.csv": "configuration,seed,value\na,0,nan\nb,0,inf\n"}),
    Case("rank-values-several-metrics", ["rank", "--values", "{work}/v.csv"], 2,
         ["several metrics (fid, kid): choose one with --metric"],
         files={"v.csv": "configuration,seed,value,metric\na,0,1,kid\na,0,2,fid\n"}),
    Case("rank-values-direction-contradiction", ["rank", "--values", "{work}/v.csv", "--metric", "nll",
                                                 "--higher-is-better"], 2, ["--higher-is-better: nll is lower-is-better"],
         files={"v.csv": "configuration,seed,value\na,0,1\n"}),
    Case("rank-values-with-sweep", ["rank", "--values", "{work}/v.csv", "--sweep", "1"], 2,
         ["--values ranks a file, --sweep/--mixed a sweep"], files={"v.csv": "configuration,seed,value\na,0,1\n"}),
    Case("rank-higher-is-better-without-values", ["rank", "--higher-is-better"], 2,
         ["--higher-is-better goes with --values"], setup="seeded"),
    Case("rank-by-a-guard", ["rank", "--metric", "ssim_memorisation"], 2,
         ["--metric ssim_memorisation: a guard shown beside the ranking, never a rank key"], setup="seeded"),
    Case("train-unknown-schedule", ["train", "--data", "{pcam}", *TINY, "--schedule", "exp"], 2,
         ["--schedule: unknown value 'exp'"]),
    Case("train-compile-unknown", ["train", "--data", "{pcam}", *TINY, "--compile", "maybe"], 2,
         ["--compile: unknown value 'maybe'", "auto, on, off"]),
    Case("train-compile-bare", ["train", "--data", "{pcam}", *TINY, "--compile"], 2,  # a switch until issue 22
         ["'--compile' requires an argument"]),
    Case("train-config-compile-number", ["train", "--data", "{pcam}", "--config", "{work}/c.toml"], 2,
         ["c.toml: key 'compile'", "expected text", "1"], files={"c.toml": "compile = 1\n"}),
    Case("runs-show-missing", ["runs", "show", "99"], 2, ["99"], setup="seeded"),
    # ---- cluster -------------------------------------------------------------------------------------
    Case("k8s-cpu-zero", [*K8S, "--cpu", "0"], 2, ["--cpu: '0' is not a positive Kubernetes quantity"]),
    Case("k8s-memory-unit", [*K8S, "--memory", "12GB"], 2, ["--memory: '12GB'", "e.g. 32Gi"]),
    Case("k8s-node-selector-no-value", [*K8S, "--node-selector", "gpu"], 2, ["--node-selector: 'gpu' is not KEY=VALUE"]),
    Case("k8s-toleration-effect", [*K8S, "--toleration", "gpu:Sometimes"], 2,
         ["--toleration: 'gpu:Sometimes'", "NoSchedule"]),
    Case("k8s-priority-class-name", [*K8S, "--priority-class", "Low_Priority"], 2, ["--priority-class: 'Low_Priority'"]),
    Case("k8s-data-claim-and-volume", [*K8S, "--data-claim", "pcam", "--data-volume", "nfs:files:/pcam"], 2,
         ["--data-claim and --data-volume", "give one"]),
    Case("k8s-data-volume-kind", [*K8S, "--data-volume", "s3://bucket/pcam"], 2,
         ["--data-volume: 's3://bucket/pcam'", "hostPath:/PATH or nfs:SERVER:/PATH"]),
    Case("k8s-data-claim-relative-data", [*K8S, "--data-claim", "pcam"], 2, ["--data demo", "an absolute path"]),
    Case("k8s-max-restarts-negative", [*K8S, "--max-restarts", "-1"], 2, ["--max-restarts: must be between 0 and 1000, got -1"]),
    Case("k8s-ttl-overflow", [*K8S, "--job-ttl", str(2**31)], 2, ["--job-ttl: must be between 0 and 2147483647"]),
    Case("k8s-run-as-root", [*K8S, "--run-as-user", "0"], 2, ["--run-as-user: must be between 1 and", "got 0"]),
    Case("k8s-dry-run-with-sqlite", K8S, 2, ["the cluster's nodes must reach the store", "PostgreSQL"]),
    # ---- synthetic sets, the utility metric, starting weights (issue 21) -------------------------
    Case("synth-n-zero", ["synth", "1", "--n", "0", "--out", "{work}/set"], 2, ["--n: must be between 1"], setup="seeded"),
    Case("synth-of-an-unconditional-run", ["synth", "1", "--n", "8", "--out", "{work}/set"], 2,
         ["run 1 is unconditional on both classes", "carry no label"], setup="seeded"),
    Case("synth-class-unknown", ["synth", "1", "--n", "8", "--out", "{work}/set", "--class", "tumour"], 2,
         ["--class: unknown value 'tumour'"], setup="seeded"),
    Case("synth-guidance-nan", ["synth", "1", "--n", "8", "--out", "{work}/set", "--guidance", "nan"], 2,
         ["--guidance: must be a finite number"], setup="seeded"),
    Case("synth-sampler-unknown", ["synth", "1", "--n", "8", "--out", "{work}/set", "--sampler", "euler"], 2,
         ["--sampler: unknown value 'euler'"], setup="seeded"),
    Case("synth-device-bogus", ["synth", "1", "--n", "8", "--out", "{work}/set", "--device", "bogus"], 2,
         ["--device: unknown value 'bogus'"], setup="seeded"),
    Case("synth-arabic-indic-digit", ["synth", "\u0663", "--n", "8", "--out", "{work}/set"], 2,
         ["run id must be a number"], setup="seeded"),
    Case("synth-seed-negative", ["synth", "1", "--n", "8", "--out", "{work}/set", "--seed", "-1"], 2,
         ["--seed: must be in 0.."], setup="seeded"),
    Case("eval-augment-without-utility", ["eval", "1", "--augment"], 2, ["--augment goes with --metrics utility"],
         setup="seeded"),
    Case("eval-utility-steps-zero", ["eval", "1", "--metrics", "utility", "--utility-steps", "0"], 2,
         ["--utility-steps: must be between 1"], setup="seeded"),
    Case("eval-utility-of-an-unconditional-run", ["eval", "1", "--metrics", "utility"], 2,
         ["--metrics utility: run 1 is unconditional"], setup="seeded"),
    Case("train-init-weights-missing", ["train", "--data", "{pcam}", *TINY, "--init-weights", "{work}/none.pt"], 2,
         ["--init-weights", "none.pt: no such file"]),
    Case("train-init-weights-not-torch", ["train", "--data", "{pcam}", *TINY, "--init-weights", "{work}/w.pt"], 2,
         ["--init-weights", "w.pt: not readable weights"], files={"w.pt": "junk"}),
]


def store_fingerprint(work) -> str:
    """A digest of every row of every table in runs.db and of every file under runs/ (names and
    bytes): equal before and after a refused command means nothing stored changed."""
    digest = hashlib.sha256()
    db = work / "runs.db"
    if db.exists():
        engine = create_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            for table in sorted(inspect(conn).get_table_names()):
                for row in conn.execute(text(f'SELECT * FROM "{table}" ORDER BY 1')):
                    digest.update(repr((table, tuple(row))).encode())
        engine.dispose()
    runs = work / "runs"
    if runs.exists():
        for path in sorted(p for p in runs.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(work)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(case, workdir, cli, monkeypatch):
    pcam = write_pcam(workdir / "pcam", {"train": 8, "valid": 4, "test": 4})
    if case.setup == "seeded":
        seed_store(workdir)
    else:
        assert case.setup == "empty", case.setup
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    for name, content in case.files.items():
        (workdir / name).write_text(content)
    before = store_fingerprint(workdir)
    argv = [a.format(pcam=pcam, work=workdir, db=f"sqlite:///{workdir / 'runs.db'}") for a in case.argv]
    r = cli(*argv)
    assert r.code == case.code, r
    for word in case.words:
        assert word in r.err, r
    for word in case.absent:
        assert word not in r.err, r
    assert len(r.err.strip().splitlines()) == case.lines, r.err
    assert store_fingerprint(workdir) == before, "a refused command changed what was stored"
    if case.setup == "empty":
        assert not (workdir / "runs").exists(), "a refused command left a runs directory"
