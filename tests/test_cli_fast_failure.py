"""Bad input fails before anything heavy loads, in the command line's own words (issue 19, C.1 and C.7).

Component names, paths and the kinds of files are checked first, so each mistake below is reported without
importing torch, CompressAI or a model: every case runs the CLI in a fresh interpreter and asserts its exit
code, its one ``Error:`` line and that none of those packages was imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import invoke
from neckkit.bitstream.images import save_image
from neckkit.bitstream.nk_format import MAGIC
from neckkit.checkpoint_folders import CONFIG_FILE, META_FILE, SUMMARY_FILE, checkpoint_dir_name
from neckkit.cli.components import in_flag_words
from neckkit.cli.train import resolve_config
from neckkit.host.manager import PluginHost
from neckkit.samples import sample_images

HEAVY = ("torch", "compressai", "timm", "transformers", "open_clip")
# Runs the CLI in this interpreter, then writes its exit code and the heavy packages it imported to argv[1].
PROBE = """
import json, sys
from neckkit.cli import main
try:
    main(sys.argv[2:])
    code = 0
except SystemExit as stop:
    code = stop.code if isinstance(stop.code, int) else 1
heavy = sorted(name for name in {heavy!r} if name in sys.modules)
with open(sys.argv[1], "w") as report:
    json.dump({{"exit_code": code, "heavy": heavy}}, report)
""".format(heavy=HEAVY)


def run_cli(tmp_path: Path, *args: str) -> tuple[int, list[str], str, str]:
    """Exit code, heavy packages imported, stdout and stderr of ``neckkit ARGS`` in a fresh interpreter."""
    report = tmp_path / "probe.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NECKKIT_LOAD_PLUGINS": ""}  # built-in plugins only
    done = subprocess.run([sys.executable, "-c", PROBE, str(report), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    probe = json.loads(report.read_text())
    return probe["exit_code"], probe["heavy"], done.stdout, done.stderr


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """A bundled photo, a file with the .nk magic, a neck folder, and paths that do not exist."""
    nk = tmp_path / "photo.nk"
    nk.write_bytes(MAGIC + b"\x01\x00" + b"\x00" * 16)  # only its first bytes matter here
    neck = tmp_path / "neck"
    neck.mkdir()
    (neck / META_FILE).write_text("{}")
    return {"photo": str(sample_images()[0]), "nk": str(nk), "neck": str(neck), "missing": str(tmp_path / "missing"),
            "missing_jpg": str(tmp_path / "missing.jpg"), "out": str(tmp_path / "out.nk")}


@pytest.mark.parametrize(
    ("args", "exit_code", "line"),
    [
        (("compress", "{photo}", "--codec", "tikc", "--tiny", "-o", "{out}"), 1,
         "Error: unknown codec 'tikc'; did you mean 'tic'?"),
        (("compress", "{missing_jpg}", "--codec", "tic", "--tiny", "-o", "{out}"), 1,
         "Error: image {missing_jpg} does not exist"),
        (("compress", "{photo}", "--neck", "{missing}", "-o", "{out}"), 1, "Error: checkpoint {missing} does not exist"),
        (("compress", "{nk}", "--codec", "tic", "--tiny", "-o", "{out}"), 1,
         "Error: {nk} is a .nk bitstream, not an image: decode it with `neckkit decompress {nk} -o IMAGE.png`"),
        (("compress", "{photo}", "--codec", "elic", "--codec-weights", "{missing}", "-o", "{out}"), 1,
         "Error: --codec-weights {missing} does not exist"),
        (("compress", "{photo}", "--codec", "tic", "--tiny", "--random-init", "-o", "{out}"), 1,
         "Error: codec 'tic' (plugin 'neckkit.plugins.codecs'): --tiny and --random-init exclude each other"),
        (("decompress", "{photo}", "-o", "back.png"), 1,
         "Error: {photo} is an image, not a .nk bitstream: compress it first with `neckkit compress {photo} --codec NAME"),
        (("decompress", "{missing}", "-o", "back.png"), 1, "Error: {missing} does not exist"),
        (("decompress", "{nk}", "-o", "back.xyz"), 1, "Error: cannot write back.xyz: unknown image suffix '.xyz'"),
        (("ask", "{nk}", "--neck", "{missing}", "--mllm", "llava-1.5", "--tiny", "--prompt", "?"), 1,
         "Error: checkpoint {missing} does not exist"),
        (("ask", "{nk}", "--neck", "{neck}", "--mllm", "lava-1.5", "--tiny", "--prompt", "?"), 1,
         "Error: unknown mllm 'lava-1.5'; did you mean 'llava-1.5'?"),
        (("ask", "{missing}", "--neck", "{neck}", "--mllm", "llava-1.5", "--tiny", "--prompt", "?"), 1,
         "Error: {missing} does not exist"),
        (("train", "--codec", "tic", "--encoder", "clip-x", "--tiny"), 1, "Error: unknown encoder 'clip-x'"),
        (("train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--data", "{missing}"), 1,
         "Error: --data {missing} does not exist"),
        (("train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--init", "{missing}"), 1,
         "Error: checkpoint {missing} does not exist"),
        (("eval", "--neck", "{missing}"), 1, "Error: checkpoint {missing} does not exist"),
        (("bench", "--codec", "tikc", "--encoder", "clip-l", "--tiny"), 1, "Error: unknown codec 'tikc'"),
        # usage errors: the command line itself cannot run as written
        (("compress", "{photo}", "-o", "{out}"), 2,
         "Error: pass --codec NAME (or --neck CKPT to use a neck checkpoint's codec)"),
        (("compress", "{photo}", "--codec", "tic"), 2,
         "Error: Missing option '--output' / '-o'. (see `neckkit compress --help`)"),
        (("compress", "{photo}", "--codec", "tic", "--tiny", "--codec-opt", "variant", "-o", "{out}"), 2,
         "Error: component option 'variant' must look like name=value"),
        (("decompress", "{nk}"), 2, "Error: pass -o IMAGE.png for the reconstruction, or --latent-only"),
        (("ask", "{nk}", "--mllm", "llava-1.5", "--prompt", "?"), 2, "Error: --neck required"),
        (("eval", "--codec", "tic", "--tiny"), 2, "Error: pass --encoder NAME"),
    ],
)
def test_bad_input_fails_before_torch_or_a_model_is_imported(
    tmp_path: Path, files: dict[str, str], args: tuple[str, ...], exit_code: int, line: str
) -> None:
    code, heavy, stdout, stderr = run_cli(tmp_path, *(arg.format(**files) for arg in args))
    assert code == exit_code, stderr
    assert stderr.startswith(line.format(**files)) and stderr.count("\n") == 1, stderr
    assert stdout == ""
    assert heavy == [], f"imported {heavy} before reporting: {stderr}"


@pytest.fixture
def finished_run(tmp_path: Path) -> tuple[Path, int]:
    """The folder ``train --codec tic --encoder clip-l --tiny --out RUN`` leaves: its config, summary and last checkpoint."""
    run = tmp_path / "run"
    config = resolve_config(None, True, None, None, None, None)
    run.mkdir()
    config.save(run / CONFIG_FILE)
    (run / SUMMARY_FILE).write_text(json.dumps({"steps": config.total_steps, "steps_this_run": config.total_steps}))
    last = run / "checkpoints" / checkpoint_dir_name(config.total_steps)
    last.mkdir(parents=True)
    (last / META_FILE).write_text("{}")
    return run, config.total_steps


def test_resume_of_a_finished_run_says_so_without_loading_anything(tmp_path: Path, finished_run) -> None:
    run, steps = finished_run
    args = ("train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--out", str(run), "--resume")
    code, heavy, stdout, stderr = run_cli(tmp_path, *args)
    assert (code, heavy, stderr) == (0, [], "")
    assert stdout == (
        f"{run} is finished: its latest checkpoint is step {steps} of {steps}; nothing to resume "
        "(raise --max-steps to train on, or train into another --out)\n"
    )
    code, heavy, stdout, stderr = run_cli(tmp_path, *args, "--json")
    assert (code, heavy) == (0, [])
    assert json.loads(stdout) == {"run_dir": str(run), "steps": steps, "steps_this_run": steps}
    assert stderr.startswith(f"{run} is finished")


def test_a_nk_among_images_is_reported_and_the_images_are_still_compressed(
    runner: CliRunner, toy_plugin: PluginHost, tmp_path: Path
) -> None:
    photo = save_image(torch.rand(1, 3, 16, 24), tmp_path / "in" / "photo.png")
    nk = tmp_path / "in" / "old.nk"
    nk.write_bytes(MAGIC + b"\x00" * 8)
    result = invoke(runner, toy_plugin, "compress", str(photo), str(nk), "--codec", "toy", "--tiny", "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {nk} is a .nk bitstream, not an image: decode it with `neckkit decompress {nk} -o IMAGE.png`\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.nk"]


def test_elic_without_weights_names_the_flags_not_the_factory_options(runner: CliRunner, host: PluginHost, tmp_path: Path) -> None:
    result = invoke(runner, host, "compress", str(sample_images()[0]), "--codec", "elic", "-o", str(tmp_path / "x.nk"))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: codec 'elic' (plugin 'neckkit.plugins.codecs'): needs weights: CompressAI publishes none; "
        "pass --codec-weights FILE "
    )
    assert result.stderr.endswith("or --tiny / --random-init for random weights\n")
    assert "=" not in result.stderr and "random_init" not in result.stderr


@pytest.mark.parametrize("extra", [[], ["--quality", "3"]])
def test_tic_without_weights_names_the_flags_not_the_factory_options(
    runner: CliRunner, host: PluginHost, tmp_path: Path, extra: list[str]
) -> None:
    result = invoke(runner, host, "compress", str(sample_images()[0]), "--codec", "tic", *extra, "-o", str(tmp_path / "x.nk"))
    assert result.exit_code == 1
    assert "--codec-weights FILE" in result.stderr
    assert "weights=" not in result.stderr and "random_init" not in result.stderr and "tiny=" not in result.stderr


@pytest.mark.parametrize(
    ("message", "kind", "expected"),
    [
        ("pass weights=<file>, tiny=True or random_init=True", "codec", "pass --codec-weights FILE, --tiny or --random-init"),
        ("needs weights=<dir> (a hub id or folder)", "mllm", "needs --mllm-weights DIR (a hub id or folder)"),
        ("quality=3 has no weights", "codec", "--quality 3 has no weights"),
        ("tiny and random_init exclude each other; seed=3", "encoder", "tiny and random_init exclude each other; seed=3"),
    ],
)
def test_factory_options_in_a_message_become_flags(message: str, kind: str, expected: str) -> None:
    assert in_flag_words(message, kind) == expected
