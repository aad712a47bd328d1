"""Running runs: detached processes, liveness, stop/kill/resume, sweeps and the queue worker."""
