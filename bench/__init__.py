"""Benchmarks: ``make bench`` (``python -m bench``). Figures go to bench/results/ as JSON and a
Markdown table; every figure sits next to a reference measured in the same run."""
