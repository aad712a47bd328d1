"""One module per view of the TUI."""
