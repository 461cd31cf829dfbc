"""The benchmark project's app: the no-op tasks that ``benchmarks/run.py`` measures."""
