"""The task registry: name → class. Adding a task is one module in `tasks/` and one line here."""

from __future__ import annotations

from typing import Any

from ioi_superpose.errors import ConfigError
from ioi_superpose.tasks.agreement import AgreementTask
from ioi_superpose.tasks.base import Task
from ioi_superpose.tasks.file import FileTask
from ioi_superpose.tasks.greater_than import GreaterThanTask
from ioi_superpose.tasks.induction import InductionTask
from ioi_superpose.tasks.ioi import IOITask

TASKS: dict[str, type[Task]] = {
    "ioi": IOITask,
    "induction": InductionTask,
    "greater_than": GreaterThanTask,
    "agreement": AgreementTask,
    "file": FileTask,
}


def make_task(name: str, **options: Any) -> Task:
    """The task registered as `name`, built with its `options` (the class's `__init__` arguments)."""
    if name not in TASKS:
        raise ConfigError(f"Unknown task {name!r}: choose one of {list(TASKS)}.")
    try:
        return TASKS[name](**options)
    except TypeError as error:  # an option the task does not take
        raise ConfigError(f"Task {name!r}: {error}. Its options are the arguments of {TASKS[name].__name__}.") from None
