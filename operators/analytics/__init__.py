"""Backtest analytics: pure functions over a run's fills, equity and returns."""
