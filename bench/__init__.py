"""Benchmarks: ``python -m bench NAME [--json]``; each ``bench/NAME.py`` is one benchmark."""
