"""Write the example prompt files shipped here, from the built-in tasks (`ioi_superpose.tasks`):

    python experiments/tasks/make_example_files.py

- `ioi_prompts.json`: 96 IOI prompt pairs (the `ioi` task's in-distribution set, seed 0) in auto-circuit's JSON
  format. The toy-IOI and GPT-2 tokenizers hold the same 99 names, so these are the built-in task's prompts for
  either (tests/test_task_file.py checks the ContrastBatch is the same).
- `greater_than_prompts.jsonl`: 32 distinct greater-than pairs (the first of 64 drawn with seed 0) as JSON Lines, one record a line: answer sets
  (every year above YY correct, the others wrong).

The texts are the task's tokens decoded; writing refuses a text that would not tokenize back to them.
"""

from __future__ import annotations

from pathlib import Path

from ioi_superpose.models import gpt2_tokenizer
from ioi_superpose.tasks import make_task, write_pair_file
from ioi_superpose.toy import toy_ioi_tokenizer

HERE = Path(__file__).parent


def main() -> None:
    ioi = make_task("ioi").splits(toy_ioi_tokenizer(), {"in_distribution": 96}, seed=0)["in_distribution"]
    print(write_pair_file(ioi, toy_ioi_tokenizer(), HERE / "ioi_prompts.json"))
    tokenizer = gpt2_tokenizer()
    years = make_task("greater_than").splits(tokenizer, {"in_distribution": 64}, seed=0)["in_distribution"]
    # The generator draws (noun, year) with replacement: keep the first 32 distinct pairs (the file task refuses a
    # record given twice).
    seen: dict[tuple[int, ...], int] = {}
    for row, tokens in enumerate(years.batch.clean_tokens.tolist()):
        seen.setdefault(tuple(tokens), row)
    years = years[sorted(seen.values())[:32]]
    print(write_pair_file(years, tokenizer, HERE / "greater_than_prompts.jsonl"))


if __name__ == "__main__":
    main()
