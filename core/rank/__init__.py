"""Ranking an ablation: statistics over seeds and the tie rule (significance.py), a sweep's table from
the store (sweep.py), rankings of values from a file (values.py)."""
