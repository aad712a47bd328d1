"""Evaluating trained runs: sample quality and likelihood measures, each in a module of its own."""
