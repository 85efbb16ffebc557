"""The evaluation experiments: one module per experiment, each registering one
:class:`~dars.evaluation.experiments.base.ExperimentSpec` (see :mod:`.base` for what a spec
holds and the vocabulary of stored inputs).

=================  ==========================================================  ==================
experiment         what                                                        result tables
=================  ==========================================================  ==================
main               every family × {single-shot, DARS, ablations} on both test  main
                   views, best fixed / random / oracle (Tables 1 and 4)
ablation           single-shot and the six ablation supervisions of one        ablation
                   family (Table 2)
diagnostics        label instability, variance split, single-shot router       diagnostics,
                   utility distribution, label recovery (Fig 2)                single_shot_dist…,
                                                                               recovery
sample_efficiency  routers trained on k×m sub-protocols (Fig 4a)               sample_efficiency
pareto             λ sweep → cost–quality frontiers, budget table (Fig 4b)     pareto,
                                                                               pareto_budget
beta               β sweep of DARS routers (Fig 4c)                            beta
validity           rewrite and scoring validity (Tables 5 and 6)               rewrite_validity,
                                                                               scoring_validity
=================  ==========================================================  ==================

The experiments are independent of each other (each reads only stage outputs), so the evaluate
flow runs them side by side; the report reads their tables. Everything here is pure: the
evaluate task (:mod:`dars.tasks.evaluate`) reads the inputs and writes the tables.

The spec type, the input vocabulary and the registry (``EXPERIMENTS``) are in :mod:`.base`;
nothing is imported here, so listing the package's modules imports no experiment.
"""
