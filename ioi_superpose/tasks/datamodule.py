"""The datamodule of any registered task: `--data.task NAME` (IOI by default), `--data.path` for the `file` task.

IOI keeps the IOI datamodule's own prompts (its name split, its toy checkpoints' split, its off-distribution
sets): the main job is unchanged. Any other task draws its sets through `Task.splits` with the run's seed; its
test sets are the in-distribution set and the task's own off-distribution sets.
"""

from __future__ import annotations

from typing import Any

from ioi_superpose.data.datamodule import OFF_DISTRIBUTION_SETS, IOIDataModule
from ioi_superpose.data.splits import IN_DISTRIBUTION, TRAIN_SET, VAL_SET
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import load_tokenizer
from ioi_superpose.tasks.base import Task, TaskPrompts
from ioi_superpose.tasks.registry import make_task

IOI_ONLY_DEFAULTS: dict[str, Any] = {
    "corruption": "name_swap", "held_out_templates": (12, 13, 14), "held_out_name_fraction": 0.2,
}  # fmt: skip
"""The IOI datamodule's own settings and their defaults: another task refuses them when set."""


def task_of(name: str, path: str | None = None, test_path: str | None = None,
            options: dict[str, Any] | None = None) -> Task:  # fmt: skip
    """The task `name` with its options; `path` / `test_path` are the `file` task's and refused for another."""
    options = dict(options or {})
    if name == "file":
        if path is None:
            raise ConfigError("--data.task file reads prompt pairs from a file: give it with --data.path PAIRS.json "
                              "(auto-circuit's format, or the same records as .jsonl).")  # fmt: skip
        options.update(path=path, test_path=test_path)
    elif path is not None or test_path is not None:
        raise ConfigError(f"--data.path and --data.test_path are the file task's; task {name!r} draws its own "
                          "prompts. Leave them unset, or use --data.task file.")  # fmt: skip
    return make_task(name, **options)


class TaskDataModule(IOIDataModule):
    """Seeded prompts of any registered task (`tasks.registry`); IOI, the default, as `IOIDataModule` draws them."""

    def __init__(
        self,
        task: str = "ioi",
        path: str | None = None,
        test_path: str | None = None,
        task_options: dict[str, Any] | None = None,
        off_distribution: tuple[str, ...] = OFF_DISTRIBUTION_SETS,
        **ioi_arguments: Any,
    ) -> None:
        """
        Args:
            task: the task's name in the registry (`ioi`, `induction`, `greater_than`, `agreement`, `file`).
            path: the `file` task's prompt pairs (`.json` in auto-circuit's format, or `.jsonl`).
            test_path: optional second file of the `file` task for the in-distribution test set.
            task_options: the task's own options (its class's arguments, e.g. {"length": 12} for induction).
            off_distribution: which off-distribution test sets `test` evaluates: IOI's by default; for another
                task, its own (leaving IOI's list, the default, means all of the task's).
            **ioi_arguments: the IOI datamodule's arguments (`IOIDataModule`); the IOI-only ones (corruption,
                held-out templates and names) are refused for another task.
        """
        self.task = task_of(task, path, test_path, task_options)
        if task == "ioi":
            super().__init__(off_distribution=off_distribution, **ioi_arguments)  # type: ignore[arg-type]
            self.task_off_distribution: tuple[str, ...] = tuple(off_distribution)
            return
        changed = [name for name, default in IOI_ONLY_DEFAULTS.items()
                   if name in ioi_arguments and _comparable(ioi_arguments[name]) != _comparable(default)]  # fmt: skip
        if changed:
            raise ConfigError(f"--data.{changed[0]} is a setting of the IOI task; task {task!r} does not read it. "
                              "Leave it unset, or set the task's own options with --data.task_options.")  # fmt: skip
        asked = tuple(off_distribution)
        own = self.task.off_distribution if asked == OFF_DISTRIBUTION_SETS else asked
        self.task.check_set_names(list(own))
        super().__init__(**ioi_arguments)  # the IOI sets' checks pass on their defaults; IOI prompts are never drawn
        self.task_off_distribution = tuple(own)
        self.task_prompts: dict[str, TaskPrompts] = {}
        """Every set's prompts with their roles and features (filled by `setup`; IOI: empty)."""

    @property
    def test_set_names(self) -> list[str]:
        return [IN_DISTRIBUTION, *self.task_off_distribution]

    @property
    def role_names(self) -> tuple[str, ...]:
        """The task's named positions (IOI: IO, S1, S2); empty for a task without roles."""
        return self.task.role_names

    def setup(self, stage: str) -> None:
        if self.task.name == "ioi":
            return super().setup(stage)
        if self.splits:
            return
        hp = self.hparams
        self.encoder = load_tokenizer(hp.model_name)
        sizes = {TRAIN_SET: hp.n_train, VAL_SET: hp.n_val, IN_DISTRIBUTION: hp.n_test,
                 **{name: hp.n_test for name in self.task_off_distribution}}  # fmt: skip
        self.task_prompts = self.task.splits(self.encoder, sizes, hp.seed)
        self.splits = {name: prompts.batch for name, prompts in self.task_prompts.items()}  # type: ignore[misc]

    def features(self, split: str) -> dict[str, list[Any]]:
        """Each prompt's features in a drawn split (`setup` first): IOI's (`IOIDataModule.features`) or the task's."""
        if self.task.name == "ioi":
            return super().features(split)
        if split not in self.task_prompts:
            raise ConfigError(f"No drawn prompt set {split!r}; call setup() first (drawn: {list(self.task_prompts)}).")
        return self.task_prompts[split].features

    def draw(self, set_name: str, n: int, corruption: Any = None, seed_name: str | None = None) -> Any:
        if self.task.name == "ioi":
            return super().draw(set_name, n, corruption, seed_name)
        raise ConfigError(f"Drawing fresh prompts by IOI generator (max-activating examples) needs the IOI task; task "
                          f"{self.task.name!r} has no such generator. Leave --max_activating unset.")  # fmt: skip


IOI_ROLES = ("IO", "S1", "S2")
"""The named positions `per_position` weighs by (`data.roles.ROLES`: IO, S1, S1+1, S2, END, other)."""


def check_roles_for_family(family: str, reads_roles: bool, task: Task) -> None:
    """Refuse a family that weighs positions by role (`per_position`: `reads_roles`) for a task whose roles it cannot
    read."""
    if not reads_roles or task.role_names == IOI_ROLES:
        return
    if not task.role_names:
        raise ConfigError(f"--model.combination {family} weighs each head per named position (role), and task "
                          f"{task.name!r} has none. Use a family that weighs whole heads (e.g. scalar).")  # fmt: skip
    raise ConfigError(
        f"--model.combination {family} reads IOI's roles ({', '.join(IOI_ROLES)}, END, other); task {task.name!r} "
        f"names {list(task.role_names)}, which it cannot read yet. Use a family that weighs whole heads (e.g. scalar)."
    )


def _comparable(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value
