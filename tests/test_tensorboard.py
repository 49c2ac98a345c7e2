"""What a user sees in TensorBoard after a run: the real server, read back through its HTTP API."""

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ioi_superpose.cli.train import main
from tests.helpers import TOY_IOI


def get(base: str, path: str, **query: str) -> bytes:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def started_tensorboard(logdir: Path, deadline: float) -> tuple[subprocess.Popen, str]:
    """`tensorboard --logdir logdir` on 127.0.0.1 and a port the OS picks (--port 0); its base URL, read
    from the line it prints when serving."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", "0",
         "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen = []
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line and server.poll() is not None:
            break
        seen.append(line)
        if match := re.search(r"(http://127\.0\.0\.1:\d+)/", line):
            return server, match.group(1)
    server.kill()
    raise AssertionError("TensorBoard did not start:\n" + "".join(seen)[-2000:])


def test_tensorboard_serves_the_validation_recovery_and_the_alpha_heatmap(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--model.model_name", TOY_IOI, "--data.n_train", "32", "--data.n_val", "16", "--data.n_test", "8",
          "--data.batch_size", "16", "--data.off_distribution", "[]", "--trainer.max_epochs", "2",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])  # fmt: skip
    (summary,) = (tmp_path / "runs").rglob("summary.json")
    final_recovery = json.loads(summary.read_text())["recovery"]["val"]
    deadline = time.monotonic() + 90
    server, base = started_tensorboard(tmp_path / "runs", deadline)
    try:
        run = "ioi_superpose/version_0"
        while True:  # the server loads the event files in the background
            scalar_tags = json.loads(get(base, "/data/plugin/scalars/tags"))
            image_tags = json.loads(get(base, "/data/plugin/images/tags"))
            if "val/recovery" in scalar_tags.get(run, {}) and "coefficients/heatmap" in image_tags.get(run, {}):
                break
            assert time.monotonic() < deadline, f"tags never appeared: {scalar_tags} {image_tags}"
            time.sleep(0.5)
        points = json.loads(get(base, "/data/plugin/scalars/scalars", run=run, tag="val/recovery"))
        # One per epoch (Lightning logs a fit's validation at the last step index: 1 and 3 of 2-step epochs),
        # then the final evaluation after fit at global step 4, which summary.json reports.
        assert [step for _, step, _ in points] == [1, 3, 4]
        assert points[-1][2] == pytest.approx(final_recovery, abs=1e-6)
        images = json.loads(get(base, "/data/plugin/images/images", run=run, tag="coefficients/heatmap", sample="0"))
        assert [image["step"] for image in images] == [2, 4]
        png = get(base, "/data/plugin/images/individualImage?" + images[-1]["query"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
