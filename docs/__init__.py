"""Documentation helpers that generate figures (`python -m docs.bandit_figure`)."""
