"""Training configuration: one dataclass is the source of CLI flags, TOML keys and validation."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BadConfig, BadInput
from core.labels import CLASSES

PREPROCESS = ("center-crop", "resize")
SCHEDULES = ("linear", "cosine", "quadratic", "sigmoid", "sigmoid-chen")
ATTENTION = ("none", "linear", "full")
OBJECTIVES = ("eps", "x0", "v")
LOSSES = ("l2", "l1", "huber")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DEVICES = ("auto", "cpu", "cuda")
COMPILE = ("auto", "on", "off")
IMAGE_SIZES = (32, 64, 96)
INT_MAX = 2**31 - 1  # counts beyond this are typos, and would not fit the store's integer columns
NAME_MAX = 200  # the store's name columns
SEED_MAX = 2**32 - 1  # numpy's legacy seeding takes 32 bits
TIMESTEPS_MAX = 100_000
# Sizes with no natural bound: beyond these a value is a typo that would exhaust memory, not a choice.
SIZE_LIMITS = {"shuffle_window": (512, "blocks, all of PCam's train split"), "dim": (1024, "channels"),
               "res_blocks": (16, "blocks per level")}


def _opt(default: Any, help: str, choices: tuple | None = None, **kw: Any) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainConfig:
    """Everything that defines a training run. Field names are the TOML keys; flags use dashes."""

    data: str = _opt("demo", "dataset directory (PCam h5 or Kaggle layout), or 'demo'")
    classes: str = _opt("both", "which patches to train on", CLASSES)
    conditional: bool = _opt(False, "one class-conditional model for both classes")
    image_size: int = _opt(32, "training resolution in pixels", IMAGE_SIZES)
    preprocess: str = _opt("center-crop", "how 96 px patches become image-size", PREPROCESS)
    augment: bool = _opt(True, "random dihedral (flip/rotate) augmentation")
    schedule: str = _opt("cosine", "noise schedule: linear (Ho et al. 2020), cosine (Nichol & Dhariwal 2021), "
                         "quadratic (sqrt(beta) linear; keeps 2.7% of the signal at T=1000), sigmoid (GeoDiff's "
                         "beta-sigmoid, Xu et al. 2022), sigmoid-chen (alpha-bar sigmoid of Jabri et al. 2022 / "
                         "Chen 2023, lucidrains' 'sigmoid')", SCHEDULES)
    timesteps: int = _opt(1000, "diffusion steps T")
    attention: str = _opt("full", "self-attention kind", ATTENTION)
    attn_resolutions: str = _opt("auto", "feature-map sizes (px) that get attention, e.g. 16,8; auto: <= 16 px")
    dim: int = _opt(64, "base channel width of the U-Net")
    dim_mults: str = _opt("1,2,4", "channel multiplier per U-Net level, e.g. 1,2,4,8")
    res_blocks: int = _opt(2, "residual blocks per level")
    dropout: float = _opt(0.1, "dropout in residual blocks")
    objective: str = _opt("v", "what the network predicts: v (Salimans & Ho 2022), eps or x0; v gives "
                          "tissue-coloured samples far sooner than eps (BENCHMARKS.md)", OBJECTIVES)
    loss: str = _opt("l2", "training loss", LOSSES)
    lr: float = _opt(2e-4, "AdamW learning rate")
    warmup_steps: int = _opt(200, "linear learning-rate warm-up steps (at most a tenth of the run)")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    grad_clip: float = _opt(1.0, "max gradient norm (0 disables)")
    batch_size: int = _opt(64, "images per step and process (the global batch is this times --nproc times --nnodes)")
    max_steps: int = _opt(10000, "total optimizer steps")
    epochs: float = _opt(0.0, "if > 0, train this many epochs instead of --max-steps")
    ema_decay: float = _opt(0.9995, "EMA decay of the sampling weights")
    cond_drop: float = _opt(0.1, "label dropout for classifier-free guidance (conditional only)")
    precision: str = _opt("auto", "autocast precision; bf16 on a CPU only where it is native (AVX512-BF16, AMX); auto: bf16 on a GPU that has it and, on such a CPU, for a run from trained weights (--init-weights); fp32 otherwise", PRECISIONS)
    compile: str = _opt("auto", "torch.compile the U-Net; auto: on CUDA (twice the images per second at 96 px on an "
                        "H200, after a compile of about 90 s whose kernels later runs reuse) unless --deterministic, "
                        "not on a CPU; the run's sampling and evaluation jobs compile on CUDA when long enough to "
                        "win the compile back, unless off", COMPILE)
    seed: int = _opt(0, "seed for weights, data order, noise")
    ckpt_every: int = _opt(500, "checkpoint every N steps")
    keep_ckpts: int = _opt(3, "checkpoints kept")
    eval_every: int = _opt(0, "validation loss every N steps (0: off)")
    sample_every: int = _opt(0, "EMA sample grid every N steps (0: only the final one; every run ends with a grid and its reverse-process GIF)")
    max_nonfinite: int = _opt(10, "stop after this many non-finite losses in a row")
    device: str = _opt("auto", "where to train", DEVICES)
    nproc: int = _opt(1, "training processes (GPUs) per node; above 1 the run trains under torchrun with "
                      "DistributedDataParallel (NCCL on GPUs, gloo on the CPU)")
    nnodes: int = _opt(1, "nodes the run trains on (a cluster executor, or torchrun with --rdzv-endpoint)")
    deterministic: bool = _opt(False, "deterministic CUDA kernels: bit-exact resume on GPUs, at a cost in speed")
    shuffle_window: int = _opt(8, "blocks of 512 patches shuffled together by the data stream: more mixes "
                               "better across a file ordered by slide, at 14 MiB of memory per block")
    init_weights: str = _opt("", "start a new run from these network weights (a .pt holding 'ema' weights of the "
                             "same architecture, e.g. a run's checkpoint), or 'demo': the weights the demo ships with")
    name: str = _opt("", "run name")
    tag: list = _opt([], "tags (repeatable)")

    # ---- derived views -------------------------------------------------------------------
    @property
    def dim_mults_tuple(self) -> tuple[int, ...]:
        return parse_int_list(self.dim_mults, "dim_mults")

    @property
    def levels(self) -> list[int]:
        """Feature-map size (px) of each U-Net level."""
        return [self.image_size // 2**i for i in range(len(self.dim_mults_tuple))]

    @property
    def attn_resolutions_tuple(self) -> tuple[int, ...]:
        if self.attention == "none" or not str(self.attn_resolutions).strip():
            return ()
        if self.attn_resolutions == "auto":
            return tuple(r for r in self.levels if r <= 16) or (self.levels[-1],)
        return parse_int_list(self.attn_resolutions, "attn_resolutions")

    @property
    def world_size(self) -> int:
        """Training processes in all."""
        return self.nproc * self.nnodes

    @property
    def global_batch_size(self) -> int:
        """Images per optimizer step over all processes."""
        return self.batch_size * self.world_size

    @property
    def num_classes(self) -> int:
        return 2 if self.conditional else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Check every field; raise BadConfig naming each field whose value cannot work (the first
        problem of each), so a form can mark all of them at once."""
        problems: dict[str, str] = {}

        def bad(name: str, message: str) -> None:
            problems.setdefault(name, message)

        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value not in choices:
                bad(f.name, f"--{flag(f.name)}: unknown value {value!r} (choose from {', '.join(map(str, choices))})")
            elif FIELD_TYPES[f.name] is float and not math.isfinite(value):
                bad(f.name, f"--{flag(f.name)}: must be a finite number, got {value!r}")
            elif FIELD_TYPES[f.name] is int and f.name != "seed" and value > INT_MAX:
                bad(f.name, f"--{flag(f.name)}: {value} is too large (at most {INT_MAX})")
        if not 0 <= self.seed <= SEED_MAX:
            bad("seed", f"--seed: must be in 0..{SEED_MAX}, got {self.seed}")
        if self.timesteps > TIMESTEPS_MAX:
            bad("timesteps", f"--timesteps: {self.timesteps} is too many (at most {TIMESTEPS_MAX})")
        for name in ("lr", "batch_size", "max_steps", "timesteps", "dim", "res_blocks", "ckpt_every",
                     "keep_ckpts", "max_nonfinite", "shuffle_window", "nproc", "nnodes"):
            if not getattr(self, name) > 0:
                bad(name, f"--{flag(name)}: must be positive, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "grad_clip", "epochs", "eval_every", "sample_every", "weight_decay"):
            if getattr(self, name) < 0:
                bad(name, f"--{flag(name)}: must not be negative, got {getattr(self, name)!r}")
        for name in ("dropout", "cond_drop", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, f"--{flag(name)}: must be in [0, 1), got {getattr(self, name)!r}")
        for name, (limit, unit) in SIZE_LIMITS.items():
            if getattr(self, name) > limit:
                bad(name, f"--{flag(name)}: {getattr(self, name)} is too large (at most {limit} {unit})")
        if self.conditional and self.classes != "both":
            bad("conditional", f"--conditional needs --classes both, got {self.classes!r}")
        if self.dim % 8:
            bad("dim", f"--dim: must be a multiple of 8 (GroupNorm groups), got {self.dim}")
        if len(self.name) > NAME_MAX:
            bad("name", f"--name: at most {NAME_MAX} characters, got {len(self.name)}")
        try:
            self.tag = [check_tag(t, "--tag") for t in self.tag]
        except BadInput as exc:
            bad("tag", str(exc))
        try:
            mults = self.dim_mults_tuple
        except BadInput as exc:
            bad("dim_mults", str(exc))
            mults = ()
        if mults and min(mults) < 1 or "dim_mults" not in problems and not mults:
            bad("dim_mults", f"--dim-mults: need at least one positive multiplier, got {self.dim_mults!r}")
        if "dim_mults" not in problems and "image_size" not in problems:
            factor = 2 ** (len(mults) - 1)
            if self.image_size % factor or self.image_size // factor < 1:
                bad("image_size", f"--image-size {self.image_size} is not divisible by 2^(len(dim_mults)-1) = "
                                  f"{factor} (--dim-mults {self.dim_mults})")
            else:
                try:
                    resolutions = self.attn_resolutions_tuple
                except BadInput as exc:
                    bad("attn_resolutions", str(exc))
                    resolutions = ()
                for res in resolutions:
                    if res not in self.levels:
                        bad("attn_resolutions", f"--attn-resolutions: {res} px is not a U-Net level (levels: "
                                                f"{', '.join(map(str, self.levels))})")
        if problems:
            order = [f.name for f in dataclasses.fields(self)]
            raise BadConfig({name: problems[name] for name in sorted(problems, key=order.index)})
        return self


def flag(name: str) -> str:
    return name.replace("_", "-")


def check_device(choice: str) -> str:
    """A `--device` value, one of DEVICES: torch.device would also take 'mps' or 'meta' and fail
    later, in the middle of the work."""
    if choice not in DEVICES:
        raise BadInput(f"--device: unknown value {choice!r} (choose from {', '.join(DEVICES)})")
    return choice


def check_tag(tag: str, where: str) -> str:
    """A tag without surrounding blanks; empty or blank tags are refused."""
    text = str(tag).strip()
    if not text:
        raise BadInput(f"{where}: empty tag {tag!r}")
    if len(text) > 100 or any(ch.isspace() for ch in text):
        raise BadInput(f"{where}: a tag is one word of at most 100 characters, got {tag!r}")
    return text


def parse_int_list(text: Any, name: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); a list or tuple of ints is accepted as is."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        return tuple(int(p) for p in items)
    except (TypeError, ValueError):
        raise BadInput(f"--{flag(name)}: expected comma-separated integers, got {text!r}", field=name) from None


FIELD_TYPES: dict[str, type] = typing.get_type_hints(TrainConfig)
TRUE_WORDS, FALSE_WORDS = ("true", "on", "yes", "1"), ("false", "off", "no", "0")
INT_LISTS = ("dim_mults", "attn_resolutions")  # text fields holding comma-separated integers


def parse_value(name: str, raw: Any, where: str | None = None) -> Any:
    """The one way a value reaches a TrainConfig field, from text (command-line flags, sweep grids,
    the TUI's form) or from TOML/JSON values: checked against the field's type and converted where
    that is lossless. A BadInput names `where` (default: the flag), the expected type and the value."""
    kind = FIELD_TYPES[name]
    where = where or f"--{flag(name)}"
    text = raw.strip() if isinstance(raw, str) else None

    def refuse(expected: str):
        raise BadInput(f"{where}: expected {expected}, got {raw!r}", field=name)

    if name == "compile" and isinstance(raw, bool):
        return "on" if raw else "off"  # configs written when it was a switch: true/false
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if text is not None and text.lower() in TRUE_WORDS + FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        refuse("true or false")
    if kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        number = raw if isinstance(raw, float) else None
        if text is not None:
            try:
                return int(text)
            except ValueError:
                number = _float_or_none(text)
        if number is not None and math.isfinite(number) and number.is_integer():
            return int(number)  # "1e4" or 10000.0
        refuse("a whole number")
    if kind is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        number = _float_or_none(text) if text is not None else None
        if number is None:
            refuse("a number")
        return number
    if kind is list:
        if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
            return list(raw)
        if text is not None:
            return [t for t in text.replace(",", " ").split() if t]
        refuse("a list of words")
    if name in INT_LISTS and isinstance(raw, (list, tuple)):
        return ",".join(str(v) for v in parse_int_list(raw, name))
    if text is None:
        refuse("text")
    if name in INT_LISTS and text and "" in text.replace(" ", "").split(","):
        refuse("comma-separated integers without an empty item (such as 1,2,4)")
    return text


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config; keys may use dashes or underscores. Unknown keys and wrong types fail."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a TOML config file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the config file ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from None
    values, keys = {}, {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in FIELD_TYPES:
            raise BadInput(f"{path}: unknown key {key!r}")
        if name in keys:  # 'dim_mults' and 'dim-mults': which one wins would be a guess
            raise BadInput(f"{path}: keys {keys[name]!r} and {key!r} both set {name}; keep one")
        keys[name] = key
        values[name] = parse_value(name, value, f"{path}: key {key!r}")
    return values


def build_config(cli_values: dict[str, Any], config_file: str | Path | None = None) -> TrainConfig:
    """Defaults < TOML file < flags given on the command line (None means 'not given')."""
    values = load_toml(config_file) if config_file else {}
    problems: dict[str, str] = {}
    for name, raw in cli_values.items():
        if raw is not None:
            try:
                values[name] = parse_value(name, raw)
            except BadInput as exc:
                problems[name] = str(exc)
                values.pop(name, None)  # validate the others against the default here
    try:
        cfg = TrainConfig(**values).validate()
    except BadConfig as exc:
        problems = {**exc.problems, **problems}
    if problems:
        order = list(FIELD_TYPES)
        raise BadConfig({name: problems[name] for name in sorted(problems, key=order.index)})
    return cfg


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a stored config, ignoring keys a newer version may have added. A run stored when
    `compile` was a switch (false, its default then, or true) keeps what it trained with."""
    known = {k: v for k, v in values.items() if k in FIELD_TYPES}
    if isinstance(known.get("compile"), bool):
        known["compile"] = parse_value("compile", known["compile"])
    return TrainConfig(**known)


# A run that trains visibly on 2 CPU cores in about a minute: the original project's setting
# (32 px, cosine schedule, no attention) at a small width, predicting v, whose samples have the
# data's colours after a few hundred steps where eps's are saturated noise (BENCHMARKS.md,
# benchmarks/bench_objectives.py); a high learning rate for the short run. Not compiled on a GPU
# either: a first compile takes longer than the whole run.
DEMO_PRESET = dict(data="demo", image_size=32, schedule="cosine", objective="v", attention="none", dim=32,
                   dim_mults="1,2,2", res_blocks=1, dropout=0.0, batch_size=16, lr=1e-3, warmup_steps=20,
                   max_steps=300, ckpt_every=100, sample_every=100, eval_every=50, name="demo", device="auto",
                   compile="off")
# The demo continues from the weights shipped for its network (core/assets/demo_weights.pt, made by
# benchmarks/train_demo_weights.py), so its first grids already show tissue; a gentler learning rate
# keeps what they learned. It trains in bf16 where the CPU has it natively: 1.28x the images per
# second of fp32 with the same samples (BENCHMARKS.md, issue 22). `demo --from-scratch` trains
# DEMO_PRESET from a fresh network, in fp32: from scratch, bf16's samples were not yet shown as good.
DEMO_FROM_WEIGHTS = dict(DEMO_PRESET, init_weights="demo", lr=2e-4, tag=["from-demo-weights"], precision="auto")


def demo_config(steps: int, from_scratch: bool = False) -> "TrainConfig":
    """The demo run of `steps` steps: from the shipped weights, or from scratch."""
    return TrainConfig(**dict(DEMO_PRESET if from_scratch else DEMO_FROM_WEIGHTS, max_steps=steps))
