"""The built-in task types, one module each, named after the task type (``mc``, ``math``,
``span``). Each module defines one :class:`~dars.benchmarks.base.TaskType` and registers an
instance of it; ``dars.benchmarks.base.TASK_TYPES`` imports a module the first time its task type
is asked for. A new task type is one new module here (or one ``dars.task_types`` entry point).
"""
