"""The store's interface: every read and write the engine makes on runs.db, one module per
aggregate (runs, sweeps, metrics, evaluations, classifiers, eval jobs, blind tests). Callers write
`queries.get_run(store, 3)`; none of them writes SQL or sees an ORM row: what comes back is a
frozen entity (core.store.entities, whose classes are named here too, for type hints such as
`queries.Run`), a plain value, or a dict."""

from core.store.entities import (Artifact, BlindTest, Classifier, EvalJob, Evaluation, Note, Run, StatusEvent,
                                 Sweep)
from core.store.queries.blind_tests import add_blind_test, blind_tests
from core.store.queries.classifiers import (add_classifier, classifiers, delete_classifier, get_classifier,
                                            update_classifier)
from core.store.queries.clock import database_clock, database_time
from core.store.queries.eval_jobs import claim_eval_job, eval_jobs, get_eval_job, queue_eval_job, set_eval_job
from core.store.queries.evaluations import add_evaluation, evaluation_record, evaluations, latest_evaluations
from core.store.queries.metrics import insert_metrics, metric_keys, metric_series, summaries, truncate_metrics
from core.store.queries.runs import (add_artifact, add_note, add_tags, artifacts, create_run, delete_run,
                                     get_run, global_batch, list_runs, notes, notes_by_run, parse_id, run_record,
                                     run_records, run_tags, set_status, status_events, update_run)
from core.store.queries.sweeps import create_sweep, create_sweep_runs, get_sweep, list_sweeps

__all__ = [
    # entities
    "Artifact", "BlindTest", "Classifier", "EvalJob", "Evaluation", "Note", "Run", "StatusEvent", "Sweep",
    # runs
    "parse_id", "create_run", "update_run", "set_status", "get_run", "list_runs", "delete_run",
    "global_batch", "run_record", "run_records", "run_tags", "add_tags", "status_events", "artifacts",
    "add_artifact", "notes", "notes_by_run", "add_note",
    # clocks
    "database_clock", "database_time",
    # sweeps
    "create_sweep", "create_sweep_runs", "list_sweeps", "get_sweep",
    # metrics
    "insert_metrics", "metric_series", "metric_keys", "summaries", "truncate_metrics",
    # evaluations, classifiers, the worker's queue, blind tests
    "add_evaluation", "evaluations", "latest_evaluations", "evaluation_record",
    "add_classifier", "update_classifier", "delete_classifier", "classifiers", "get_classifier",
    "queue_eval_job", "claim_eval_job", "set_eval_job", "get_eval_job", "eval_jobs",
    "add_blind_test", "blind_tests",
]
