"""The user's own prompt pairs, from a file: auto-circuit's JSON format or the same records as JSON Lines.

    {"prompts": [{"clean": "...", "corrupt": "...", "answers": [" Mary"], "wrong_answers": [" John"]}, ...],
     "seq_labels": [...], "word_idxs": {"IO": 5, ...}}            # .json (the last two keys optional)
    {"clean": "...", "corrupt": "...", "answers": [" Mary"], "wrong_answers": [" John"]}   # .jsonl, one a line

As auto-circuit reads them (`auto_circuit.data.load_datasets_from_json`): prompts are strings, tokenized with
BOS first, or lists of token ids used as they are; every answer is one token (`answers` correct,
`wrong_answers` incorrect: the logit difference is mean(answers) − mean(wrong_answers)); `word_idxs` name
token positions (BOS included) shared by every prompt, which become the task's roles; `seq_labels` name
each position. Refused, each naming the file and the line: bad JSON, a missing or unknown key, a wrong
type, an empty prompt or answer list, an answer of several tokens, an answer listed twice or as both
correct and incorrect, clean and corrupted prompts of different token lengths (positions must align:
make them equal, e.g. with single-token substitutions), identical clean and corrupted prompts, a record
given twice, token ids outside the vocabulary, `word_idxs` / `seq_labels` that do not fit the prompts,
and a file too small for the requested splits.

Splits: the records are shuffled by the seed and cut into train, val and the in-distribution test set, in
that order, by the requested sizes; with `test_path` the test set comes from that file instead.
Features: each prompt's `record` (1-based, in its file) and `line`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ioi_superpose.data.answer_metrics import MetricName, check_metric
from ioi_superpose.data.ioi import TextEncoder
from ioi_superpose.errors import ConfigError, UnknownWordError
from ioi_superpose.tasks.base import CORE_SETS, Row, Task, TaskPrompts, pad_id, stack_rows

RECORD_KEYS = ("clean", "corrupt", "answers", "wrong_answers")
TOP_LEVEL_KEYS = ("prompts", "seq_labels", "word_idxs")
SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class Record:
    """One prompt pair as written in the file."""

    clean: str | list[int]
    corrupt: str | list[int]
    answers: list[str] | list[int]
    wrong_answers: list[str] | list[int]
    number: int
    """1-based position among the file's records."""
    line: int


@dataclass(frozen=True)
class PairFile:
    """A parsed prompt file: its records and the dataset-wide labels."""

    path: Path
    records: list[Record]
    seq_labels: list[str] | None = None
    word_idxs: dict[str, int] | None = None

    def where(self, record: Record) -> str:
        return f"{self.path}, line {record.line} (record {record.number})"


class FileTask(Task):
    """Prompt pairs read from a file (module docstring), measured by the metric the user names."""

    name = "file"
    feature_names = ("record", "line")

    def __init__(self, path: str, test_path: str | None = None, metric: MetricName = "logit_diff") -> None:
        """
        Args:
            path: a `.json` file in auto-circuit's format or a `.jsonl` file of the same records.
            test_path: an optional second file for the in-distribution test set (train and val then use all of
                `path`).
            metric: `logit_diff` (mean(answers) − mean(wrong_answers)) or `prob_diff` (P(answers) −
                P(wrong_answers), as greater-than).
        """
        self.metric = check_metric(metric)  # type: ignore[misc]
        self.path, self.test_path = path, test_path
        self.file = read_pair_file(path)
        self.test_file = read_pair_file(test_path) if test_path is not None else None

    @property
    def role_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.file.word_idxs or ())

    def splits(self, encoder: TextEncoder, sizes: Mapping[str, int], seed: int) -> dict[str, TaskPrompts]:
        self.check_set_names(list(sizes))
        for set_name, n in sizes.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"Task 'file': the {set_name} set must have a positive number of prompts, got {n!r}.")
        main = [name for name in CORE_SETS if name in sizes and not (name == "in_distribution" and self.test_file)]
        rows = tokenize_pair_file(self.file, encoder)
        cuts = _cut(self.file, rows, {name: sizes[name] for name in main}, seed)
        if self.test_file is not None and "in_distribution" in sizes:
            test_rows = tokenize_pair_file(self.test_file, encoder)
            cuts.update(_cut(self.test_file, test_rows, {"in_distribution": sizes["in_distribution"]}, seed))
        return {name: stack_rows(cuts[name], pad_id(encoder), self.role_names, self.feature_names, self.metric)
                for name in sizes}  # fmt: skip


def _cut(file: PairFile, rows: list[Row], sizes: dict[str, int], seed: int) -> dict[str, list[Row]]:
    """The seeded shuffle of `rows` cut into consecutive sets of `sizes`; refused when the file is too small."""
    needed = sum(sizes.values())
    if needed > len(rows):
        asked = ", ".join(f"{name} {n}" for name, n in sizes.items())
        raise ConfigError(
            f"{file.path} holds {len(rows)} prompt pairs but the requested sets need {needed} ({asked}). Add prompt "
            "pairs to the file, or ask for fewer (--data.n_train, --data.n_val, --data.n_test)."
        )
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cuts, start = {}, 0
    for name, n in sizes.items():
        cuts[name] = [rows[i] for i in order[start : start + n]]
        start += n
    return cuts


# --------------------------------------------------------------------------------------------------
# Reading and checking a file (no tokenizer needed).


def read_pair_file(path: str | Path) -> PairFile:
    """The records of a `.json` / `.jsonl` prompt file, each checked for keys and types (module docstring)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ConfigError(
            f"{path}: a prompt file must be .json (auto-circuit's {{\"prompts\": [...]}}) or .jsonl (one record a "
            f"line), got {path.suffix or 'no suffix'!r}."
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such prompt file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error}).") from None
    file = _read_jsonl(path, text) if path.suffix == ".jsonl" else _read_json(path, text)
    if not file.records:
        raise ConfigError(f"{path}: the file holds no prompt pairs.")
    return file


def _read_json(path: Path, text: str) -> PairFile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}, line {error.lineno} column {error.colno}: not valid JSON ({error.msg}).") from None
    if not isinstance(data, dict) or "prompts" not in data:
        raise ConfigError(
            f'{path}, line 1: expected an object {{"prompts": [...]}} (auto-circuit\'s format), got '
            f"{_kind(data) if not isinstance(data, dict) else 'an object without a prompts key'}. "
            "Records one a line belong in a .jsonl file."
        )
    unknown = [key for key in data if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(f"{path}, line 1: unknown key(s) {unknown}; a prompt file has {list(TOP_LEVEL_KEYS)}.")
    if not isinstance(data["prompts"], list):
        raise ConfigError(f'{path}: "prompts" must be a list of records, got {_kind(data["prompts"])}.')
    lines = _record_lines(text, len(data["prompts"]))
    records = [_record(path, item, number, line) for number, (item, line) in enumerate(zip(data["prompts"], lines), 1)]
    return PairFile(path, records, _seq_labels(path, data.get("seq_labels")), _word_idxs(path, data.get("word_idxs")))


def _read_jsonl(path: Path, text: str) -> PairFile:
    records = []
    for line, content in enumerate(text.splitlines(), 1):
        if not content.strip():
            continue
        try:
            item = json.loads(content)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}, line {line} column {error.colno}: not valid JSON ({error.msg}).") from None
        records.append(_record(path, item, len(records) + 1, line))
    return PairFile(path, records)


def _record_lines(text: str, n: int) -> list[int]:
    """The line on which each element of the top-level "prompts" list starts (the text is valid JSON)."""
    decoder = json.JSONDecoder()
    index = _skip_space(text, 0) + 1  # past the top-level "{"
    while True:
        index = _skip_space(text, index)
        key, index = json.decoder.scanstring(text, index + 1)
        index = _skip_space(text, _skip_space(text, index) + 1)  # past ":"
        if key == "prompts":
            break
        _, index = decoder.raw_decode(text, index)
        index = _skip_space(text, index) + 1  # past ","
    index += 1  # past "["
    lines = []
    for _ in range(n):
        index = _skip_space(text, index)
        lines.append(text.count("\n", 0, index) + 1)
        _, index = decoder.raw_decode(text, index)
        index = _skip_space(text, index) + 1  # past "," (or "]")
    return lines


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _record(path: Path, item: Any, number: int, line: int) -> Record:
    where = f"{path}, line {line} (record {number})"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: a record must be an object with keys {list(RECORD_KEYS)}, got {_kind(item)}.")
    missing = [key for key in RECORD_KEYS if key not in item]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}; every record has {list(RECORD_KEYS)}.")
    unknown = [key for key in item if key not in RECORD_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; a record has exactly {list(RECORD_KEYS)}.")
    as_ids = isinstance(item["clean"], list)
    for key in ("clean", "corrupt"):
        value = item[key]
        if as_ids:
            if not isinstance(value, list) or not value or not all(_is_id(t) for t in value):
                raise ConfigError(
                    f"{where}: {key!r} must be a non-empty list of token ids like 'clean' (or both strings), "
                    f"got {_kind(value)}."
                )
        elif not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"{where}: {key!r} must be a non-empty string (or a list of token ids), got {value!r:.80}."
            )
    for key in ("answers", "wrong_answers"):
        value = item[key]
        element_ok = _is_id if as_ids else (lambda v: isinstance(v, str) and v != "")
        if not isinstance(value, list) or not all(element_ok(v) for v in value):
            form = "token ids" if as_ids else "non-empty strings"
            raise ConfigError(f"{where}: {key!r} must be a list of {form} (one token each), got {value!r:.80}.")
        if not value:
            raise ConfigError(
                f"{where}: {key!r} is empty; every prompt needs at least one correct and one wrong answer."
            )
        repeated = sorted({v for v in value if value.count(v) > 1}, key=str)
        if repeated:
            raise ConfigError(f"{where}: {key!r} lists {repeated} more than once; list each answer once.")
    both = [v for v in item["answers"] if v in item["wrong_answers"]]
    if both:
        raise ConfigError(f"{where}: {both} are in both 'answers' and 'wrong_answers'; an answer is correct or wrong.")
    return Record(item["clean"], item["corrupt"], item["answers"], item["wrong_answers"], number, line)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seq_labels(path: Path, labels: Any) -> list[str] | None:
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        raise ConfigError(
            f'{path}: "seq_labels" must be a list of strings (one per token position), got {_kind(labels)}.'
        )
    return labels


def _word_idxs(path: Path, idxs: Any) -> dict[str, int] | None:
    if idxs is None:
        return None
    if not isinstance(idxs, dict) or not all(_is_id(v) for v in idxs.values()):
        raise ConfigError(
            f'{path}: "word_idxs" must map names to token positions (non-negative integers, BOS at 0), '
            f"got {idxs!r:.80}."
        )
    return dict(idxs)


# --------------------------------------------------------------------------------------------------
# Tokenizing a file's records.


def tokenize_pair_file(file: PairFile, encoder: TextEncoder) -> list[Row]:
    """One `Row` per record, every refusal naming the record's line (module docstring)."""
    vocab_size = len(encoder)  # type: ignore[arg-type]
    rows: list[Row] = []
    seen: dict[tuple, Record] = {}
    forms = {isinstance(record.clean, list) for record in file.records}
    if len(forms) > 1:
        first = next(r for r in file.records if isinstance(r.clean, list) != isinstance(file.records[0].clean, list))
        raise ConfigError(f"{file.where(first)}: prompts are token ids here but strings in record 1; use one form.")
    for record in file.records:
        where = file.where(record)
        clean, corrupted = (_prompt_tokens(encoder, text, where, vocab_size) for text in (record.clean, record.corrupt))
        if len(clean) != len(corrupted):
            raise ConfigError(
                f"{where}: the clean prompt is {len(clean)} tokens and the corrupted one {len(corrupted)}; they must "
                "have the same length so that positions align (e.g. substitute words of one token each)."
            )
        if clean == corrupted:
            raise ConfigError(f"{where}: the clean and corrupted prompts are the same tokens; a pair must differ.")
        correct = [_answer_token(encoder, a, where, "answers", vocab_size) for a in record.answers]
        incorrect = [_answer_token(encoder, a, where, "wrong_answers", vocab_size) for a in record.wrong_answers]
        both = sorted(set(correct) & set(incorrect))
        if both or len(set(correct)) < len(correct) or len(set(incorrect)) < len(incorrect):
            raise ConfigError(f"{where}: answers that tokenize to the same token ({both or 'within one list'}); each "
                              "token can be one answer only.")  # fmt: skip
        key = (tuple(clean), tuple(corrupted), tuple(correct), tuple(incorrect))
        if key in seen:
            raise ConfigError(f"{where}: the same prompt pair as {file.where(seen[key])}; remove the duplicate.")
        seen[key] = record
        roles = _roles(file, record, len(clean))
        rows.append(Row(clean, corrupted, correct, incorrect, roles, {"record": record.number, "line": record.line}))
    return rows


def _prompt_tokens(encoder: TextEncoder, prompt: str | list[int], where: str, vocab_size: int) -> list[int]:
    if isinstance(prompt, list):
        _check_ids(prompt, where, vocab_size)
        return list(prompt)
    bos = [encoder.bos_token_id] if encoder.bos_token_id is not None else []
    return bos + _encode(encoder, prompt, where)


def _answer_token(encoder: TextEncoder, answer: str | int, where: str, key: str, vocab_size: int) -> int:
    if isinstance(answer, int):
        _check_ids([answer], where, vocab_size)
        return answer
    tokens = _encode(encoder, answer, where)
    if len(tokens) != 1:
        pieces = [encoder.decode([t]) for t in tokens]
        raise ConfigError(
            f"{where}: the {key[:-1].replace('_', ' ')} {answer!r} is {len(tokens)} tokens for this tokenizer "
            f"({pieces}); every answer must be one token. Use its first token as the answer, or another word."
        )
    return tokens[0]


def _encode(encoder: TextEncoder, text: str, where: str) -> list[int]:
    try:
        return list(encoder.encode(text, add_special_tokens=False))
    except UnknownWordError as error:
        raise ConfigError(f"{where}: {error}") from None


def _check_ids(tokens: Sequence[int], where: str, vocab_size: int) -> None:
    bad = [t for t in tokens if t >= vocab_size]
    if bad:
        raise ConfigError(f"{where}: token ids {bad[:5]} are outside the tokenizer's vocabulary (size {vocab_size}).")


def _roles(file: PairFile, record: Record, length: int) -> dict[str, int]:
    if file.seq_labels is not None and len(file.seq_labels) != length:
        raise ConfigError(
            f'{file.where(record)}: "seq_labels" names {len(file.seq_labels)} positions but this prompt has {length} '
            "tokens (BOS included); seq_labels need prompts of one length."
        )
    roles = dict(file.word_idxs or {})
    outside = {name: position for name, position in roles.items() if position >= length}
    if outside:
        raise ConfigError(
            f'{file.where(record)}: "word_idxs" {outside} point past this prompt\'s {length} tokens (BOS included).'
        )
    return roles


# --------------------------------------------------------------------------------------------------
# Writing prompts as a file.


def pair_records(prompts: TaskPrompts, encoder: TextEncoder) -> list[dict[str, Any]]:
    """Each prompt pair as an auto-circuit record of strings: BOS and padding dropped, answers decoded.

    Refused when a text does not tokenize back to the same tokens (the file would not reproduce the prompts).
    """
    batch = prompts.batch.to("cpu")
    start = 1 if encoder.bos_token_id is not None else 0
    weights = batch.weights
    records = []
    for row in range(len(batch)):
        end = int(batch.end_pos[row]) + 1
        pair = (batch.clean_tokens, batch.corrupted_tokens)
        texts = [encoder.decode(tokens[row, start:end].tolist()) for tokens in pair]
        answers = batch.answer_tokens[row].tolist()
        record = {
            "clean": texts[0],
            "corrupt": texts[1],
            "answers": [_answer_text(encoder, t) for t, w in zip(answers, weights[row].tolist()) if w > 0],
            "wrong_answers": [_answer_text(encoder, t) for t, w in zip(answers, weights[row].tolist()) if w < 0],
        }
        for text, tokens in zip(texts, pair):
            if encoder.encode(text, add_special_tokens=False) != tokens[row, start:end].tolist():
                raise ConfigError(f"Prompt {row}: {text!r} does not tokenize back to its tokens; it cannot be a file.")
        records.append(record)
    return records


def _answer_text(encoder: TextEncoder, token: int) -> str:
    """The answer as auto-circuit writes it, with its leading space (" Mary") where that is the same token: a
    word-level tokenizer decodes "Mary", which GPT-2 would read as another token."""
    text = encoder.decode([token])
    if not text.startswith(" ") and encoder.encode(" " + text, add_special_tokens=False) == [token]:
        return " " + text
    return text


def write_pair_file(prompts: TaskPrompts, encoder: TextEncoder, path: str | Path) -> Path:
    """`prompts` as a prompt file (`.json`: auto-circuit's format, with `word_idxs` when every prompt shares its
    role positions; `.jsonl`: one record a line), written atomically."""
    from ioi_superpose.files import atomic_write

    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"{path}: write a .json or .jsonl prompt file.")
    records = pair_records(prompts, encoder)
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(record) + "\n" for record in records)
    else:
        shared = {name: int(positions[0]) for name, positions in prompts.roles.items()
                  if bool((positions == positions[0]).all())}  # fmt: skip
        data: dict[str, Any] = {"prompts": records}
        if shared and len(shared) == len(prompts.roles):
            data = {"word_idxs": shared, **data}
        text = json.dumps(data, indent=1) + "\n"
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
