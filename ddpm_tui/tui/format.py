"""How the screens write a run's status, durations, numbers and name: one look everywhere."""

from __future__ import annotations

from core.services.views import RunView

STATUS_STYLE = {"running": "bold green", "lost": "bold yellow", "queued": "yellow", "finished": "blue", "failed": "bold red",
                "stopped": "magenta", "killed": "magenta reverse", "crashed": "bold red reverse"}


def fmt_duration(seconds: float | None) -> str:
    """h:mm:ss, or '-' when unknown."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def fmt_float(value: float | None, digits: int = 4) -> str:
    """A number with `digits` decimals, or '-' when missing."""
    return "-" if value is None else f"{value:.{digits}f}"


def eta_seconds(r: RunView) -> float | None:
    """Seconds a running run still needs at its current rate; None when it is not training."""
    if r.status != "running" or not r.img_per_s or r.writing_samples:
        return None
    return max(0, r.total_steps - r.step) * r.global_batch / r.img_per_s


def eta_text(r: RunView) -> str:
    """The ETA column: time left, or what a run past its last step still does."""
    return "writing samples" if r.writing_samples else fmt_duration(eta_seconds(r))


def run_label(run_id: int, name: str) -> str:
    """How a confirmation names a run: its id and, where it has one, its name."""
    return f"{run_id} '{name}'" if name else str(run_id)
