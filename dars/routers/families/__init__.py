"""The built-in router families, one module each; the module name is the family name.

``dars.routers.registry`` lists these modules without importing them and imports one the first
time its family is asked for, so listing the families or using a scikit-learn family never
imports torch. A new family is one new module here that defines a :class:`~dars.routers.Router`
subclass decorated with ``@register_router("<module name>")`` and declaring its ``tags``
(plus its test in ``tests/routers/families/``); a family from another package registers through
the ``dars.routers`` entry-point group instead. Keep this package free of other modules: every
module in it is taken for a family.
"""
