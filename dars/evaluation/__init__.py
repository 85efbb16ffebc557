"""Evaluation: pure — result frames from stage outputs, and the report laid out from them.

* :mod:`.metrics` — test-time utility of routes and reference policies, bootstrap CIs;
* :mod:`.experiments` — one module per experiment, each registering one spec (its inputs,
  compute, tables, report section, figures and terminal view);
* :mod:`.refit` — what the experiments that refit routers in memory share;
* :mod:`.document`, :mod:`.report`, :mod:`.plots`, :mod:`.paper` — the report's document
  model, its layout and renderers (Markdown, HTML through ``templates/report.html.j2``), the
  figures and the paper's own numbers.

Nothing here reads or writes a file of the run: :mod:`dars.tasks.evaluate` and
:mod:`dars.tasks.report` do, through :mod:`dars.storage`.
"""
