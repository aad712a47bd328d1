"""The metric registry: every number an evaluation stores, with which way is better, its unit, its
labels for the faces' tables, what it means, and which `eval --metrics` choice computes it.

Every list of metric names (the checks of eval and rank, their --help, the faces' column labels,
the ranking's directions and guards) comes from METRICS and REQUESTS. Plain data only: the command
line reads it for its help without loading torch; the computations are core.evaluate.results.
"""

from __future__ import annotations

from dataclasses import dataclass

MEMORISATION_THRESHOLD = 0.9  # SSIM to a training patch at or above which a sample counts as a copy


@dataclass(frozen=True)
class Metric:
    name: str  # as stored, and as `rank --metric` takes it
    request: str  # the `eval --metrics` choice that computes it (a key of REQUESTS)
    direction: str  # "lower" or "higher" is better; "guard": shown beside a ranking, never a rank key
    unit: str
    label: str  # in the command line's tables
    short: str  # in the TUI's narrow columns (at most 9 characters)
    meaning: str  # one line: what the number is

    @property
    def ranked(self) -> bool:
        """Whether the metric can be a rank key (a guard cannot)."""
        return self.direction != "guard"


@dataclass(frozen=True)
class Request:
    """One choice of `eval --metrics`: what computing it needs."""

    name: str
    samples: bool  # it draws samples from the run
    classifier: bool  # it needs a PCam classifier for the run's data
    judged_by: str  # the stored metric whose presence shows a run was evaluated for it (`eval --missing`)


# in the order a sweep's rankings list them; the first evaluated one is the default rank key (training
# loss is never one: its scale depends on the noise schedule)
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("nll", "nll", "lower", "bits/dim", "NLL bits/dim", "NLL b/d",
           "the variational bound on the negative log-likelihood of real held-out patches"),
    Metric("kid", "kid", "lower", "squared MMD", "KID", "KID",
           "kernel distance (unbiased) between samples and real held-out patches in PCam-classifier features"),
    Metric("fid", "fid", "lower", "squared distance", "FID", "FID",
           "Frechet distance between samples and real held-out patches in PCam-classifier features"),
    Metric("ssim_memorisation", "ssim", "guard", "fraction", "SSIM memorisation", "SSIM mem",
           f"fraction of samples with SSIM >= {MEMORISATION_THRESHOLD} to a training patch or one of its 8 dihedral "
           "transforms (near-blank samples excepted); flagged above 0"),
    Metric("ssim_diversity", "ssim", "lower", "SSIM", "SSIM diversity", "SSIM div",
           "|mean pairwise SSIM of samples - that of real held-out patches| (0: the real data's own diversity)"),
    Metric("class_fidelity", "class", "higher", "fraction", "class fidelity", "class fid",
           "fraction of samples the PCam classifier assigns to the class they were drawn for"),
    Metric("utility", "utility", "higher", "ratio", "utility", "utility",
           "TSTR AUC / TRTR AUC: a classifier trained on samples against one trained on as many real patches"),
    Metric("tstr_auc", "utility", "higher", "AUC", "TSTR AUC", "TSTR AUC",
           "ROC AUC on real held-out patches of a classifier trained on samples"),
    Metric("tstr_accuracy", "utility", "higher", "fraction", "TSTR accuracy", "TSTR acc",
           "accuracy on real held-out patches of a classifier trained on samples"),
    Metric("trtr_auc", "utility", "higher", "AUC", "TRTR AUC", "TRTR AUC",
           "ROC AUC on real held-out patches of a classifier trained on as many real training patches"),
    Metric("trtr_accuracy", "utility", "higher", "fraction", "TRTR accuracy", "TRTR acc",
           "accuracy on real held-out patches of a classifier trained on as many real training patches"),
    Metric("augment_auc_gain", "utility", "higher", "AUC difference", "augment AUC gain", "aug gain",
           "AUC of a classifier trained on real + synthetic patches minus that of one trained on the real alone "
           "(eval --augment)"),
)}

# the choices of `eval --metrics`, in the order evaluations are reported
REQUESTS: dict[str, Request] = {r.name: r for r in (
    Request("nll", samples=False, classifier=False, judged_by="nll"),
    Request("ssim", samples=True, classifier=False, judged_by="ssim_memorisation"),
    Request("kid", samples=True, classifier=True, judged_by="kid"),
    Request("fid", samples=True, classifier=True, judged_by="fid"),
    Request("class", samples=True, classifier=True, judged_by="class_fidelity"),
    Request("utility", samples=True, classifier=False, judged_by="utility"),
)}


def rank_keys() -> tuple[str, ...]:
    """The metrics a ranking can be keyed by, in ranking order."""
    return tuple(name for name, m in METRICS.items() if m.ranked)


def guards() -> tuple[str, ...]:
    """The metrics shown beside a ranking but never ranked nor compared."""
    return tuple(name for name, m in METRICS.items() if not m.ranked)


def label(name: str) -> str:
    """A stored metric's label for the command line's tables (an unknown name is its own label)."""
    return METRICS[name].label if name in METRICS else name


def short_label(name: str) -> str:
    """A stored metric's label for the TUI's narrow columns (an unknown name is its own label)."""
    return METRICS[name].short if name in METRICS else name


def report_order(name: str) -> int:
    """Where a stored metric goes in a run's report: grouped by the --metrics choice that computes
    it, in REQUESTS order; unknown names last."""
    by_request = [m for r in REQUESTS for m in METRICS if METRICS[m].request == r]
    return by_request.index(name) if name in by_request else len(by_request)
