"""Ranking an ablation: statistics over seeds (stats.py) and a sweep's table from the store (sweep.py)."""
