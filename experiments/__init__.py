"""Experiment scripts, run as modules from the repository root (`python -m experiments.compare_arms`,
`python -m experiments.report OUT_DIR`): importable by tests and by each other without path edits."""
