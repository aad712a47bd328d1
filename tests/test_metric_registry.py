"""The metric registry (core.evaluate.metrics) is the one list of metrics: what the evaluation stores,
what rank and eval accept, and how the faces label them all come from it."""

import re
from pathlib import Path

import pytest

from core.errors import BadInput
from core.evaluate.metrics import METRICS, REQUESTS, guards, label, rank_keys, report_order, short_label

EVALUATE = Path(__file__).resolve().parents[1] / "core" / "evaluate"


def stored_names() -> set[str]:
    """Every metric name the evaluation code writes into a result, read from its source."""
    source = "".join(p.read_text() for p in EVALUATE.glob("*.py"))
    return set(re.findall(r"\b(?:Result|UtilityRow)\(\s*\"(\w+)\"", source))


def test_the_registry_names_exactly_the_metrics_the_evaluation_stores():
    """Names written as literals; the utility rows' complete set is checked end to end in test_synth."""
    written = stored_names()
    assert written <= set(METRICS), written - set(METRICS)
    assert {m for m in METRICS if METRICS[m].request != "utility"} <= written


def test_each_metric_belongs_to_a_request_and_each_request_is_judged_by_its_own_metric():
    assert {m.request for m in METRICS.values()} == set(REQUESTS)
    for request in REQUESTS.values():
        assert METRICS[request.judged_by].request == request.name
    for m in METRICS.values():
        assert m.direction in ("lower", "higher", "guard"), m
        assert m.unit and m.label and m.meaning and len(m.short) <= 9, m


def test_rank_keys_and_guards_split_the_metrics():
    assert set(rank_keys()) | set(guards()) == set(METRICS) and not set(rank_keys()) & set(guards())
    assert guards() == ("ssim_memorisation",) and rank_keys()[0] == "nll"


def test_labels_and_report_order():
    assert label("nll") == "NLL bits/dim" and short_label("class_fidelity") == "class fid"
    assert label("made_up") == "made_up" and short_label("made_up") == "made_up"
    order = sorted(METRICS, key=report_order)
    assert order[:6] == ["nll", "ssim_memorisation", "ssim_diversity", "kid", "fid", "class_fidelity"]
    assert report_order("made_up") == len(METRICS)


def test_eval_accepts_exactly_the_registered_requests():
    from core.evaluate.planning import parse_metrics

    assert parse_metrics(",".join(REQUESTS)) == tuple(REQUESTS)
    with pytest.raises(BadInput, match="choose from nll, ssim, kid, fid, class, utility"):
        parse_metrics("ssim_diversity")
