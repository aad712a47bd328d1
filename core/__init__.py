"""The ddpm-tui engine: data, model, diffusion, training, sampling and the run store.

Nothing in this package imports from ``ddpm_tui``; the CLI and the TUI are faces on top of it.
"""
