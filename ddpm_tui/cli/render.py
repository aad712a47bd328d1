"""How the CLI writes its answers: JSON, text tables, CSV and Markdown, progress bars. Every text
that came from a user or a file goes through core.text.printable before it reaches a terminal."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from core.errors import BadInput
from core.evaluate.metrics import METRICS, label
from core.text import printable, printable_lines


def echo_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def write_export(text: str, out: Path | None) -> None:
    """An export to --out exactly as stored; on stdout (a terminal, often) with the control
    characters of names, notes, tags and config made visible, its CSV/Markdown lines kept."""
    if out is None:
        sys.stdout.write(printable_lines(text))
        return
    try:
        with open(out, "w", newline="", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write ({exc.strerror})") from None


def csv_text(rows: list[list]) -> str:
    """Rows as CSV text."""
    table = io.StringIO()
    csv.writer(table).writerows(rows)
    return table.getvalue()


def stage_progress(console):
    """A transient progress bar per stage (sampling, each metric, the classifier) on a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description:<10}"), MofNCompleteColumn(), BarColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)


def say_above(progress):
    """A line on stderr above a stage_progress bar (as is: no markup), made printable first."""
    return lambda line: progress.console.print(printable(line), markup=False, highlight=False, soft_wrap=True)


# ---- runs ----------------------------------------------------------------------------------------
def runs_lines(records: list[dict]) -> list[str]:
    """`runs list`: one line per run."""
    lines = [f"{'id':>4}  {'name':<28} {'status':<9} {'step':>13}  {'loss':>8}  {'img/s':>7}  sweep"]
    for r in records:
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else "-"
        rate = f"{r['img_per_s']:.1f}" if r["img_per_s"] is not None else "-"
        lines.append(f"{r['id']:>4}  {printable(r['name'])[:28]:<28} {r['status']:<9} {r['step']:>6}/{r['total_steps']:<6}  "
                     f"{loss:>8}  {rate:>7}  {r['sweep_id'] or ''}")
    return lines


def run_report_lines(record: dict) -> list[str]:
    """`runs show`: the run's fields, config, events, notes and evaluations."""
    lines = [f"{key:>12}: {printable(record[key])}"
             for key in ("id", "name", "status", "step", "total_steps", "loss", "global_batch", "executor",
                         "external_id", "job_state", "host", "pid", "run_dir", "exit_reason", "tags")]
    lines.append("      config: " + printable(", ".join(f"{k}={v}" for k, v in record["config"].items())))
    lines += [f"       event: {e['status']:<9} {printable(e['reason'] or '')}" for e in record["events"]]
    lines += [f"        note: {printable(n['text'])}" for n in record["notes"]]
    for e in record["evaluations"]:
        ci = f" [{e['ci_low']:.4g}, {e['ci_high']:.4g}]" if e["ci_low"] is not None else ""
        lines.append(f"  evaluation: {e['metric']:<18} {e['value']:.4g}{ci} n={e['n']} {e['split']} step {e['checkpoint_step']}")
    return lines


def runs_csv(records: list[dict]) -> str:
    """`export --format csv`: one row per run, its config spread over config.* columns."""
    config_keys = sorted({k for r in records for k in r["config"]})
    fields = [k for k in records[0] if k not in ("config", "tags", "notes")] if records else ["id"]
    rows = [fields + ["tags", "notes"] + [f"config.{k}" for k in config_keys]]
    rows += [[r[k] for k in fields] + [" ".join(r["tags"]), " | ".join(r["notes"])]
             + [r["config"].get(k) for k in config_keys] for r in records]
    return csv_text(rows)


def classifier_lines(rows: list[dict]) -> list[str]:
    """`classifier list`: one line per stored classifier."""
    return [f"{r['id']:>4}  {printable(r['data'])}  {r['image_size']} px {r['preprocess']}  accuracy {r['accuracy']:.3f}  "
            f"AUC {r['auc'] if r['auc'] is None else round(r['auc'], 3)}  ({r['n_eval']} {r['split']} patches)"
            for r in rows]


# ---- evaluations and rankings -------------------------------------------------------------------------
def evaluation_lines(records: list[dict]) -> list[str]:
    """`eval`: one line per stored metric, with what it was computed in and how."""
    lines = [f"{'run':>4}  {'metric':<18} {'value':>10}  {'95% CI':<22} {'n':>5}  {'split':<5}  {'ckpt':>8}  sampling"]
    for r in records:
        ci = f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if r["ci_low"] is not None else "-"
        sampling = f"{r['sampler']} {r['steps']}" + (f" w={r['guidance']:g}" if r["guidance"] else "") if r["sampler"] else "-"
        lines.append(f"{r['run_id']:>4}  {label(r['metric']):<18} {r['value']:>10.4g}  {ci:<22} "
                     f"{r['n']:>5}  {r['split']:<5}  {r['checkpoint_step']:>8}  {sampling}")
    lines += [f"KID/FID in {note}" for note in sorted({r["details"].get("space") for r in records
                                                        if r["details"].get("space")})]
    if any(r["metric"] == "nll" and r["details"].get("estimate") for r in records):
        lines.append("NLL from --nll-timesteps K is an unbiased estimate of the bound; its CI includes the timestep sampling")
    return lines


def interval_cell(stats, best) -> str:
    """'mean [low, high]' with the tie mark: =best, = (tied), nothing (worse), n/c (not compared)."""
    if stats.tied is None:
        mark = "n/c" if best is not None else ""
    else:
        mark = ("=best" if stats is best else "=") if stats.tied else ""
    return f"{stats.interval.value:.4g} [{stats.interval.low:.4g}, {stats.interval.high:.4g}] {mark}".rstrip()


def ranking_title(ranking) -> str:
    key = ranking.rankings[ranking.metric]
    return (f"sweep {ranking.sweep_id} ({printable(ranking.name)}): {len(key.configs)} configurations, ranked by "
            f"{ranking.metric} ({METRICS[ranking.metric].direction} is better)")


def ranking_header(ranking) -> list[str]:
    """The ranking table's column names."""
    return ([*ranking.factors, "seeds", "p_worse"] + [f"{m} [95% CI]" for m in ranking.rankings]
            + [f"{m} (guard)" for m in ranking.guards or {}] + ["loss~ (not comparable)"])


def ranking_rows(ranking) -> list[list[str]]:
    """The ranking table's cells, best configuration first."""
    key = ranking.rankings[ranking.metric]
    configs = {m: {c.config: c for c in r.configs} for m, r in ranking.rankings.items()}
    rows = []
    for c in key.configs:
        cells = [str(v) for v in c.config] + [str(len(c.values)), "n/c" if c.p_worse is None else f"{c.p_worse:.3g}"]
        for m in ranking.rankings:
            s = configs[m].get(c.config)
            cells.append("-" if s is None else interval_cell(s, ranking.rankings[m].configs[0]))
        for stats in (ranking.guards or {}).values():
            g = stats.get(c.config)
            cells.append("-" if g is None else interval_cell(g, None))
        loss = ranking.train_loss.get(c.config)
        rows.append(cells + ["-" if loss is None else f"{loss:.4f}"])
    return rows


def ranking_text_table(ranking) -> list[str]:
    """The ranking table in aligned columns (`rank`)."""
    key = ranking.rankings[ranking.metric]
    nf, nm, ng = len(ranking.factors), len(ranking.rankings), len(ranking.guards or {})
    widths = [max(len(f), *(len(str(c.config[i])) for c in key.configs)) for i, f in enumerate(ranking.factors)]
    header = ranking_header(ranking)
    head = "  ".join(f"{f:<{w}}" for f, w in zip(ranking.factors, widths))
    head += "  seeds  p_worse   " + "  ".join(f"{h:<34}" for h in header[nf + 2:nf + 2 + nm])
    head += "".join(f"  {h:<30}" for h in header[nf + 2 + nm:nf + 2 + nm + ng]) + "  " + header[-1]
    lines = [head]
    for row in ranking_rows(ranking):
        line = "  ".join(f"{v:<{w}}" for v, w in zip(row, widths))
        line += f"  {row[nf]:>5}  {row[nf + 1]:<8}  "
        line += "".join(f"{cell:<34}  " for cell in row[nf + 2:nf + 2 + nm])
        line += "".join(f"{cell:<30}  " for cell in row[nf + 2 + nm:nf + 2 + nm + ng])
        lines.append(line + row[-1])
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table (| in a cell escaped)."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header))] + [line(r) for r in rows]


def ranking_notes(ranking) -> list[str]:
    """What the ranking table needs beside it: the tie rule, guards, intervals, settings, effects."""
    key = ranking.rankings[ranking.metric]
    lines = [f"tie rule: {ranking.tie_test}"]
    if any(not s.compared for r in ranking.rankings.values() for s in r.configs):
        lines.append(f"n/c: {ranking.one_seed_note}")
    for m in ranking.guards or {}:
        lines.append(f"{m} (guard): {METRICS[m].meaning}; shown, never ranked")
    methods = sorted({s.ci_method for r in ranking.rankings.values() for s in r.configs})
    lines.append("intervals: " + "; ".join(methods))
    for m, r in ranking.rankings.items():
        lines.append(f"{m} evaluated with {r.settings}")
    lines.append("loss~: smoothed training loss; its scale depends on the noise schedule, so it never ranks")
    lines.append(f"main effects on {ranking.metric} (mean over the other factors and seeds, 95% CI):")
    for factor in ranking.factors:
        levels = [e for e in key.effects if e.factor == factor]
        lines.append(f"  {factor}: " + "   ".join(f"{e.level} {e.interval.value:.4g} [{e.interval.low:.4g}, "
                                                  f"{e.interval.high:.4g}]" for e in levels))
    if key.interaction is not None:
        i = key.interaction
        (a1, a2), (b1, b2) = (sorted({c.config[k] for c in key.configs}, key=str) for k in (0, 1))
        lines.append(f"interaction {' x '.join(ranking.factors)}, ({a1},{b1} - {a1},{b2}) - ({a2},{b1} - {a2},{b2}): "
                     f"{i.value:.4g} [{i.low:.4g}, {i.high:.4g}]")
    if ranking.missing:
        lines.append(f"without {ranking.metric}: " + ", ".join(f"run {k} ({printable(v)})"
                                                              for k, v in ranking.missing.items()))
    return lines


def ranking_lines(ranking) -> list[str]:
    """`rank`: the title, the aligned table and its notes."""
    return [ranking_title(ranking), *ranking_text_table(ranking), *ranking_notes(ranking)]


def ranking_markdown(ranking) -> str:
    """`export --format md`: the title in bold, a Markdown table, the notes as a list."""
    lines = [f"**{ranking_title(ranking)}**", "", *markdown_table(ranking_header(ranking), ranking_rows(ranking)), ""]
    return "\n".join(lines + [f"- {note.strip()}" for note in ranking_notes(ranking)]) + "\n"


def ranking_csv(ranking, record: dict) -> str:
    """`export --sweep --format csv`: one row per configuration, five columns per metric."""
    metrics = list(ranking.rankings)
    rows = [ranking.factors + ["runs"] + [f"{m}.{k}" for m in metrics
                                          for k in ("mean", "ci_low", "ci_high", "seeds", "tied_with_best")]]
    for row in record["rows"]:
        cells = [row["config"][f] for f in ranking.factors] + [" ".join(map(str, row["runs"]))]
        for m in metrics:
            r = row[m]
            cells += [r["value"], r["ci_low"], r["ci_high"], r["seeds"], r["tied_with_best"]] if r else [""] * 5
        rows.append(cells)
    return csv_text(rows)


def values_ranking_lines(ranking) -> list[str]:
    """`rank --values`: a file's configurations ranked."""
    width = max(len("configuration"), *(len(printable(c.config[0])) for c in ranking.configs))
    lines = [f"{printable(ranking.source)}: {len(ranking.configs)} configurations, ranked by "
             f"{printable(ranking.metric or 'value')} ({ranking.direction} is better)",
             f"{'configuration':<{width}}  seeds  p_worse   mean [95% CI]"]
    best = ranking.configs[0] if ranking.configs[0].compared else None
    for c in ranking.configs:
        p = "n/c" if c.p_worse is None else f"{c.p_worse:.3g}"
        lines.append(f"{printable(c.config[0]):<{width}}  {len(c.values):>5}  {p:<8}  {interval_cell(c, best)}")
    lines.append(f"tie rule: {ranking.tie_test}")
    if any(not c.compared for c in ranking.configs):
        lines.append(f"n/c: {ranking.one_seed_note}")
    lines.append("intervals: " + "; ".join(sorted({c.ci_method for c in ranking.configs})))
    lines += [f"left out: {printable(line)}" for line in ranking.left_out]
    return lines
