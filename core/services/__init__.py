"""The service layer both faces call (the TUI and the CLI): one call per use case, plain frozen
views out, core.errors types for every refusal. `lab.Lab` is the entry: one store and its runs
directory, with the use cases grouped by module (runs, training, evaluation, sampling, blind)."""
