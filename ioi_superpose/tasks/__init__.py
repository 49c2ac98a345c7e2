"""Tasks as data: how to make contrast pairs for a tokenizer, one small module per task.

    from ioi_superpose.tasks import make_task
    task = make_task("greater_than")
    sets = task.splits(tokenizer, {"train": 256, "val": 64, "in_distribution": 64}, seed=0)
    sets["train"].batch            # a ContrastBatch: clean/corrupted tokens, answer sets with weights, END
    sets["train"].roles, sets["train"].features   # named positions, per-prompt feature values
    task.metric                    # "logit_diff" or "prob_diff" (data/answer_metrics.py)

Built in: `ioi`, `induction`, `greater_than`, `agreement`, and `file` (the user's own pairs, auto-circuit's JSON
format or JSON Lines). This package imports only `data/`, `models/` and `errors` (and `files` to write a file).
"""

from ioi_superpose.tasks.base import CORE_SETS, GeneratedTask, Task, TaskPrompts
from ioi_superpose.tasks.file import read_pair_file, write_pair_file
from ioi_superpose.tasks.registry import TASKS, make_task

__all__ = [
    "CORE_SETS",
    "GeneratedTask",
    "TASKS",
    "Task",
    "TaskPrompts",
    "make_task",
    "read_pair_file",
    "write_pair_file",
]
