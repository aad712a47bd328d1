"""ddpm-tui's faces: the Typer command line and the Textual app."""
