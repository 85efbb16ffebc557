"""The built-in benchmarks, one module per source: ``demo`` (``demo_mc``, ``demo_math``,
``demo_span``, generated), ``gpqa``, ``math500``, ``drop`` (``drop800``) and ``local``
(``jsonl``, ``parquet``: a user's file). ``dars.benchmarks.base.BENCHMARKS`` imports every module
here the first time the registry is consulted; each registers its names with
``@register_benchmark``. A benchmark of an existing task type is one new module here.
"""
