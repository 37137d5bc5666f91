"""Reproducible benchmarks: ``python -m bench`` (``make bench``).

Each module here that defines ``run(report, ctx)`` is a benchmark (``core``, and others
such as ``search``); ``bench.report`` and ``bench.context`` are the harness they share.
"""

__all__: list[str] = []
