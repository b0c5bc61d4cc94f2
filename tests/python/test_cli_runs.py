"""The package's `samix` command is the samix command line; run folders read as plain data."""

import os
import subprocess
import sys

import pytest

import samix


def test_the_command_line_runs_from_python(tmp_path):
    done = subprocess.run([sys.executable, "-m", "samix", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Usage: samix" in done.stdout and "pretrain" in done.stdout
    done = subprocess.run([sys.executable, "-m", "samix", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"samix {samix.__version__}"
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nlr = -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "samix", "config", "show", "--config", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr


def test_the_module_finds_torchs_libraries_without_a_library_path():
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    code = "import samix, torch; print(samix.MixUp(seed=0)(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])).lam.dtype)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "torch.float32", done.stderr


def test_a_run_folder_reads_as_plain_data(samix_run, tmp_path):
    run = samix.read_run(samix_run)
    assert run.summary["epochs"] == 1 and isinstance(run.summary["final_acc1"], float)
    assert len(run.metrics) == 1 and run.config["mix"]["policy"] == "samix"
    assert run.column("test_acc1") == [run.summary["final_acc1"]]
    assert len(run.column("loss_mask")) == 1
    with pytest.raises(KeyError, match="'nope' is not in every epoch"):
        run.column("nope")
    with pytest.raises(FileNotFoundError, match="not a samix run folder"):
        samix.read_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": \n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: Expecting value"):
        samix.read_run(tmp_path)
