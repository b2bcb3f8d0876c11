"""Experiments over many runs: sweep plans and their manifest (``sweep.py``), executors that run
them on local processes or Ray (``executors.py``) and reports (``report.py``)."""
