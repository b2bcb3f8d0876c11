"""Experiments over many runs, lowest module first: ``plan.py`` (a sweep's search space parsed and
expanded into checked configurations), ``manifest.py`` (the sweep directory's files: sweep.json,
each run's result.json), ``executors.py`` (local worker processes or Ray), ``report.py`` (metrics,
CSVs, plots) and ``sweep.py`` (the entry points ``plan_sweep`` and ``run_sweep``). The command line
(``fastrl sweep``) is in :mod:`fastrl.cli`."""
