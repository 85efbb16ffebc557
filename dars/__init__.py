"""dars — distribution-aware routing supervision for LLM routers.

Importing the package sets nothing in the environment; the entry points (the ``dars`` CLI, the
Prefect flows, the tests) apply the offline defaults of :mod:`dars.env`.
"""

__version__ = "0.1.0"
