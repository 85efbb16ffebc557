"""One module per stage: the work a Prefect task does — read inputs through :mod:`dars.storage`,
call the pure packages (:mod:`dars.supervision`, :mod:`dars.routers`, :mod:`dars.evaluation`),
write outputs through storage — and the ``@task`` wrapper beside it. Flows call these tasks
only."""
