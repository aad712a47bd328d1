"""The application service under both faces: what the TUI and the CLI may do to the store and the
runs, in one place. Every call does I/O (a face runs it in a worker thread); errors are core.errors
types, never to be parsed from their text."""

from __future__ import annotations

from core.services.blind import BlindUseCases
from core.services.clusters import ClusterUseCases
from core.services.evaluation import EvaluationUseCases
from core.services.runs import RunUseCases
from core.services.sampling import SamplingUseCases
from core.services.training import TrainingUseCases


class Lab(RunUseCases, ClusterUseCases, TrainingUseCases, EvaluationUseCases, SamplingUseCases, BlindUseCases):
    """One store and its runs directory (core.services.session.Session) with every use case."""
