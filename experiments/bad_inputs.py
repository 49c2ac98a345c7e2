"""Runs every bad or edge input of issue 19 (and more) and writes what the code does today.

    python experiments/bad_inputs.py   # ~10 min on our shared 2-core CPU; writes experiments/reports/bad_inputs.md

Command-line inputs run as subprocesses (`python -m ioi_superpose.…`, the exit code is the process's);
Python API inputs run in this process (the "exit" column then says whether the call raised, warned or
returned). The message column is the line a user sees: the `error:` / `warning:` / `note:` line, or the
exception. Every run uses tiny settings on the shipped toy model (checkpoints/toy_ioi.pt), in a
temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOY = str(REPO / "checkpoints" / "toy_ioi.pt")
OUT = REPO / "experiments" / "reports" / "bad_inputs.md"
TINY = ["--model.model_name", TOY, "--data.n_train", "16", "--data.n_val", "8", "--data.n_test", "8",
        "--data.batch_size", "8", "--data.off_distribution", "[held_out_names]", "--trainer.max_steps", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip


@dataclass
class Case:
    item: str
    """The issue-19 item it checks ("1"–"7", "unclear", "also"), or "extra" for our own."""
    shown: str
    """The input as a user would type it."""
    exit: str = ""
    message: str = ""


def said(stdout: str, stderr: str) -> str:
    """The line(s) the user is meant to read: a whole `error:` message (it may span lines), else the
    `warning:` / `note:` / result lines."""
    if "Traceback" in stderr:
        return "TRACEBACK: " + [line for line in stderr.splitlines() if line.strip()][-1]
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:") or ": error:" in line]
    if errors:
        return " ".join(lines[errors[0] :])
    keys = ("warning:", "note:", "Stopped at step", "Resume", "python", "Initial α", "Learned α")
    picked = [line for line in lines if line.startswith(keys) or "ioi_superpose.train fit" in line]
    return " / ".join(dict.fromkeys(picked)) if picked else (lines[-1] if lines else "(no output)")


def run_cli(case: Case, args: list[str], cwd: Path) -> Case:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    case.exit, case.message = str(done.returncode), said(done.stdout, done.stderr)
    return case


def run_api(case: Case, call: Callable[[], object]) -> Case:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except Exception as error:  # the point: what a user sees
            case.exit, case.message = f"raises {type(error).__name__}", str(error).splitlines()[0]
            return case
    noise = ("does not have many workers", "val_dataloader", "deprecated")  # Lightning's and TransformerLens's
    ours = [str(w.message) for w in caught if w.category is UserWarning]
    ours = [message for message in ours if not any(text in message for text in noise)]
    case.exit = "returns, warns" if ours else "returns"
    case.message = " / ".join(ours) if ours else str(result)
    return case


def cli_cases(work: Path) -> list[Case]:
    """Command-line inputs (subprocesses)."""
    todo: list[tuple[Case, list[str]]] = []

    def cli(item: str, args: list[str], shown: str | None = None) -> None:
        shown = shown or "python -m " + " ".join(a if a != TOY else "checkpoints/toy_ioi.pt" for a in args)
        todo.append((Case(item, shown.replace(" ".join(TINY[2:]), "<tiny>").replace(str(work), "TMP")), args))

    fit = ["ioi_superpose.train", "fit", *TINY]
    # A finished run to resume from (in a directory of its own), a truncated summary and a plain file for --out.
    (work / "first").mkdir()
    run_cli(Case("setup", ""), fit, work / "first")
    last = next((work / "first").rglob("last.ckpt"))
    truncated = work / "truncated_run"
    truncated.mkdir()
    (truncated / "summary.json").write_text('{"model_name": "x", "recov')
    a_file = work / "a_file"
    a_file.write_text("")
    config = REPO / "experiments" / "toy_ioi.yaml"

    cli("1", ["ioi_superpose.sweep", "--config", str(config), "--out", "sweep", "--grid", "model.l1=0.001,0.001"])
    cli("1", ["ioi_superpose.sweep", "--config", str(config), "--out", "sweep", "--grid", "model.l1=0.001,1e-3"])
    for module in ("train", "sweep", "report", "benchmark", "train_toy", "train_batched"):
        cli("2", [f"ioi_superpose.{module}", "--help"])
    cli("2", ["ioi_superpose.benchmark", "--bogus"])
    cli("2", ["ioi_superpose.benchmark", "--out", str(a_file)])
    cli("4", ["ioi_superpose.train", "validate", *TINY])
    cli("4", [*fit, "--trainer.max_steps", "0"])
    cli("5", [*fit, "--data.seed", "3", "--ckpt_path", str(last)])
    cli("5", [*fit, "--data.corruption", "abc", "--ckpt_path", str(last)])
    cli("5", [*fit, "--model.l1", "0.01", "--ckpt_path", str(last)])
    cli("6", [*fit, "--data.held_out_name_fraction", "0.3"])
    cli("7", [*fit, "--model.combination", "mixing", "--model.mixing_target", "1", "--model.prune_target", "1.0"])
    cli("8", [*fit, "--model.temperature", "0.5"])
    cli("8", [*fit, "--model.mixing_target", "1"])
    cli("8", [*fit, "--model.rotation_layers", "[0]"])
    nan_config = work / "nan.yaml"
    nan_config.write_text("model:\n  l1: .nan\n")
    cli("9", [*fit, "--config", str(nan_config)])
    cli("9", [*fit, "--model.prune_target", "inf"])
    cli("unclear", [*fit, "--data.off_distribution", "[held_out_templates]", "--data.held_out_templates", "[]"])
    cli("unclear", [*fit, "--model.l1", "nan"])
    cli("unclear", [*fit, "--model.init", "nan", "--model.bounded", "false"])
    cli("unclear", ["ioi_superpose.report", str(truncated), "--out", "report"])
    cli("unclear", ["ioi_superpose.report", str(last.parents[1]), "--out", str(a_file)])
    cli("unclear", ["ioi_superpose.sweep", "--config", str(config), "--out", str(a_file), "--grid", "model.l1=0.001"])
    cli(
        "also",
        [
            *fit,
            "--trainer.max_steps",
            "-1",
            "--trainer.max_epochs",
            "3",
            "--trainer.callbacks+=tests.helpers.kill.InterruptAtStep",
            "--trainer.callbacks.step",
            "3",
        ],
        shown="python -m ioi_superpose.train fit <tiny> --trainer.max_epochs 3 + Ctrl-C at step 3 (a test callback)",
    )
    # Our own: each option's type, range and interplay; each entry point.
    for option, value in (("--model.l1", "-1"), ("--model.lr", "0"), ("--model.direction", "sideways"),
                          ("--model.combination", "foo"), ("--model.prune_target", "1.5"), ("--data.n_train", "0"),
                          ("--data.batch_size", "abc"), ("--data.held_out_templates", "[15]"),
                          ("--data.off_distribution", "[nope]"), ("--data.held_out_name_fraction", "1.0"),
                          ("--model.model_name", "checkpoints/missing.pt"), ("--model.temperature", "0"),
                          ("--model.l0_threshold", "-1"), ("--model.objective", "foo"), ("--data.corruption", "foo"),
                          ("--model.cache_dtype", "int8"), ("--ckpt_path", "missing.ckpt"),
                          ("--ckpt_path", str(truncated / "summary.json")),
                          ("--trainer.logger.init_args.save_dir", str(a_file / "runs"))):  # fmt: skip
        cli("extra", [*fit, option, value])
    cli("extra", [*fit, "--model.combination", "mixing", "--model.mixing_target", "5"])
    cli("extra", ["ioi_superpose.sweep", "--config", str(config), "--out", "sweep", "--grid", "model.l1"])
    cli("extra", ["ioi_superpose.sweep", "--config", "missing.yaml", "--out", "sweep"])
    cli("extra", ["ioi_superpose.sweep", "--config", str(config), "--out", "sweep", "--batch_variants", "0"])
    cli("extra", ["ioi_superpose.sweep", "--config", str(config), "--out", "sweep", "--grid", "model.l1=1",
                  "--grid", "model.l1=2"])  # fmt: skip
    cli("extra", ["ioi_superpose.report", str(work / "empty"), "--out", "report"])
    cli("extra", ["ioi_superpose.train_batched", "--member", "--model.l1 0.01"])
    cli("extra", ["ioi_superpose.train", "fit", "--model.l1", "-1", "--config", str(config)])
    # Two at a time (two cores); each case in a directory of its own, so runs never share a version number.
    for number in range(len(todo)):
        (work / str(number)).mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        cases = list(pool.map(lambda job: run_cli(job[1][0], job[1][1], work / str(job[0])), enumerate(todo)))
    return cases


def api_cases() -> list[Case]:
    """Python API inputs (in this process)."""
    import torch

    from ioi_superpose import learn_combination, learn_combinations, recovery_of
    from ioi_superpose.data.datamodule import IOIDataModule
    from ioi_superpose.data.prompts import ioi_prompts
    from ioi_superpose.models import load_frozen_model

    model = load_frozen_model(TOY)
    padded = ioi_prompts(TOY, n=16, equal_length=False)
    q = ioi_prompts(TOY, n=16)
    c, x, a = q.clean_tokens, q.corrupted_tokens, q.answer_tokens
    meta = torch.load(TOY, weights_only=True)["metadata"]

    def learn(**settings):
        args = dict(clean_tokens=c, corrupted_tokens=x, answer_tokens=a, steps=2)
        args.update(settings)
        r = learn_combination(model, **args)
        return f"recovery {r.recovery:.3f}, clean logit diff {r.clean_logit_diff:.2f}, L0 {r.l0}"

    def held_out_with_seed(seed: int) -> str:
        data = IOIDataModule(model_name=TOY, seed=seed, n_train=8, n_val=8, n_test=8)
        data.setup("test")
        trained_on = set(data.held_out_names) & set(meta["train_names"])
        return (
            f"held_out_names: the checkpoint's {len(data.held_out_names)} held-out names, {len(trained_on)} trained on"
        )

    cases = [
        ("3", "learn_combination(toy, *padded prompts) (ioi_prompts(..., equal_length=False))",
         lambda: learn(clean_tokens=padded.clean_tokens, corrupted_tokens=padded.corrupted_tokens,
                       answer_tokens=padded.answer_tokens)),
        ("3", "the same with end_positions=prompts.end_pos",
         lambda: learn(clean_tokens=padded.clean_tokens, corrupted_tokens=padded.corrupted_tokens,
                       answer_tokens=padded.answer_tokens, end_positions=padded.end_pos)),
        ("3", "equal-length prompts, for comparison", lambda: learn()),
        ("6", "IOIDataModule(model_name=toy, seed=1).held_out_names", lambda: held_out_with_seed(1)),
        ("7", "learn_combination(..., combination='mixing', mixing_target=1, prune_target=1.0)",
         lambda: learn(combination="mixing", mixing_target=1, prune_target=1.0)),
        ("unclear", "learn_combination(..., l1=float('nan'))", lambda: learn(l1=float("nan"))),
        ("unclear", "learn_combination(..., init=float('nan'), bounded=False)",
         lambda: learn(init=float("nan"), bounded=False)),
        ("unclear", "learn_combination(toy, clean, clean, answers) (clean == corrupted)", lambda: learn(corrupted_tokens=c)),
        ("unclear", "learn_combination(..., answer_tokens=answers[:, [0, 0]]) (IO == S)",
         lambda: learn(answer_tokens=a[:, [0, 0]])),
        ("unclear", "learn_combination(toy, clean.float(), ...)", lambda: learn(clean_tokens=c.float())),
        ("also", "learn_combination(..., l1=-1)", lambda: learn(l1=-1.0)),
        ("extra", "learn_combination(..., steps=0)", lambda: learn(steps=0)),
        ("extra", "learn_combination(..., steps=2.5)", lambda: learn(steps=2.5)),
        ("extra", "learn_combination(..., direction='sideways')", lambda: learn(direction="sideways")),
        ("extra", "learn_combination(..., combination='foo')", lambda: learn(combination="foo")),
        ("extra", "learn_combination(..., lr=0)", lambda: learn(lr=0.0)),
        ("extra", "learn_combination(..., end_positions=torch.full((16,), 99))",
         lambda: learn(end_positions=torch.full((16,), 99))),
        ("extra", "learn_combination(..., end_positions=torch.zeros(3, dtype=torch.long))",
         lambda: learn(end_positions=torch.zeros(3, dtype=torch.long))),
        ("extra", "learn_combination(..., end_positions=q.end_pos.float())", lambda: learn(end_positions=q.end_pos.float())),
        ("extra", "learn_combination(toy, clean[0], corrupted[0], answers[0]) (1-D)",
         lambda: learn(clean_tokens=c[0], corrupted_tokens=x[0], answer_tokens=a[0])),
        ("extra", "learn_combination(..., answer_tokens=[n, 3])", lambda: learn(answer_tokens=torch.cat([a, a[:, :1]], 1))),
        ("extra", "learn_combination(..., clean_tokens=clean + 1000) (ids outside the vocabulary)",
         lambda: learn(clean_tokens=c + 1000)),
        ("extra", "learn_combination(..., corrupted_tokens=corrupted[:, :-1])", lambda: learn(corrupted_tokens=x[:, :-1])),
        ("extra", "learn_combination(..., clean_tokens=clean.tolist())", lambda: learn(clean_tokens=c.tolist())),
        ("extra", "learn_combination(toy, clean[:0], corrupted[:0], answers[:0]) (no prompt)",
         lambda: learn(clean_tokens=c[:0], corrupted_tokens=x[:0], answer_tokens=a[:0])),
        ("extra", "learn_combinations(..., members=[])", lambda: learn_combinations(model, c, x, a, members=[], steps=2)),
        ("extra", "learn_combinations(..., members=[{'bogus': 1}])",
         lambda: learn_combinations(model, c, x, a, members=[{"bogus": 1}], steps=2)),
        ("extra", "recovery_of(toy, prompts, alpha=torch.ones(3, 3)) (wrong shape)",
         lambda: recovery_of(model, q, torch.ones(3, 3))),
        ("extra", "ioi_prompts(toy path, n=0)", lambda: ioi_prompts(TOY, n=0)),
        ("extra", "ioi_prompts(toy path, corruption='foo')", lambda: ioi_prompts(TOY, corruption="foo")),
        ("extra", "ioi_prompts('checkpoints/missing.pt')", lambda: ioi_prompts("checkpoints/missing.pt")),
    ]  # fmt: skip
    return [run_api(Case(item, f"`{shown}`"), call) for item, shown, call in cases]


def markdown(cases: list[Case], seconds: float) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Bad inputs: what each one does today (issue 19)",
        "",
        f"Written by `python experiments/bad_inputs.py` ({seconds:.0f} s): every row was run, the message is the "
        "one the user sees. Item: the issue-19 item the row checks (1–9 silent results, unclear messages, also), "
        "or `extra` for our own. Items 8 and 9 (settings of another family, non-finite numbers in a "
        "configuration) are refused by the config dataclasses (`fitting/settings.py`) before anything runs.",
        "",
        "| # | item | input | exit | message |",
        "|---|---|---|---|---|",
    ]
    for number, case in enumerate(cases, start=1):
        lines.append(f"| {number} | {case.item} | {cell(case.shown)} | {case.exit} | {cell(case.message)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        (work / "empty").mkdir()
        cases = cli_cases(work)
    cases += api_cases()
    OUT.write_text(markdown(cases, time.perf_counter() - start))
    print(f"{len(cases)} inputs; wrote {OUT}")
    print(json.dumps([case.__dict__ for case in cases if case.exit == "0" and case.item == "extra"], indent=1))


if __name__ == "__main__":
    main()
