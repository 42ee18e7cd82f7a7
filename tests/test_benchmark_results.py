"""benchmarks/write_results.py: the marked block of docs/benchmarks.md, its tables, and one tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "write_results.py"
DOC = REPO / "docs" / "benchmarks.md"

_spec = importlib.util.spec_from_file_location("write_results", SCRIPT)
write_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(write_results)
BEGIN, END = write_results.BEGIN, write_results.END


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False)


def outside(text: str) -> tuple[str, str]:
    """What precedes the block (the begin marker included) and what follows it (the end marker included)."""
    return text[: text.index(BEGIN) + len(BEGIN)], text[text.index(END):]


# -- replace_block ----------------------------------------------------------------------------------

def test_replace_block_replaces_only_the_marked_region() -> None:
    before = "# Title\r\n\nprose with ünïcode, trailing space \n\n"
    after = "\n\nmore prose\r\nno newline at the end"
    text = f"{before}{BEGIN}\nold block\n| a | b |\n{END}{after}"
    new = write_results.replace_block(text, "\n\nnew block\n| c |\n\n")
    assert new == f"{before}{BEGIN}\nnew block\n| c |\n{END}{after}"
    assert new.encode().startswith(before.encode()) and new.encode().endswith(after.encode())
    assert write_results.replace_block(new, "new block\n| c |") == new  # idempotent


def test_replace_block_works_on_the_real_document() -> None:
    text = DOC.read_bytes().decode("utf-8")
    new = write_results.replace_block(text, "X")
    assert outside(new) == outside(text)
    assert f"{BEGIN}\nX\n{END}" in new


@pytest.mark.parametrize(
    "text",
    ["no markers at all", f"only {BEGIN} here", f"only {END} here", f"{END} reversed {BEGIN}",
     f"{BEGIN} twice {BEGIN} {END}", f"{BEGIN} a {END} b {BEGIN} c {END}"],
)
def test_replace_block_refuses_text_without_one_pair_of_markers(text: str) -> None:
    with pytest.raises(write_results.MarkersMissing, match="results:begin"):
        write_results.replace_block(text, "block")


def test_missing_markers_fail_with_one_error_line_and_leave_the_file_untouched(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_bytes(b"# Benchmarks\r\n\nno markers here\n")
    before = doc.stat()
    done = run_script("--tiny", "--doc", str(doc))
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error: ") and "results:begin" in done.stderr
    assert doc.read_bytes() == b"# Benchmarks\r\n\nno markers here\n"
    assert doc.stat().st_mtime_ns == before.st_mtime_ns
    assert list(tmp_path.iterdir()) == [doc]  # no temporary file left behind


def test_write_atomically_keeps_the_file_mode(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("old")
    doc.chmod(0o644)
    write_results.write_atomically(doc, "new ü")
    assert doc.read_bytes() == "new ü".encode()
    assert doc.stat().st_mode & 0o777 == 0o644
    assert list(tmp_path.iterdir()) == [doc]


# -- results_markdown -------------------------------------------------------------------------------

ELIC = {
    "codec": "elic", "encoder": "clip-l", "size": 256, "entry_layer": 2, "device": "cpu", "threads": 1,
    "repeats": 5, "image": "astronaut.jpg", "neck_params": 13_191_168, "neck_kmac_per_pixel": 52.68798,
    "replaced_params": 33_398_275, "synthesis_params": 7_337_475, "encoder_front_params": 26_060_800,
    "replaced_kmac_per_pixel": 360.1412, "synthesis_kmac_per_pixel": 254.9698, "encoder_front_kmac_per_pixel": 105.1714,
    "decode_seconds": 0.29312, "machine_front_seconds": 0.17404, "reconstruction_front_seconds": 1.08731,
    "front_latency_ratio": 6.2474, "machine_end_to_end_seconds": 3.9312, "reconstruction_end_to_end_seconds": 4.1478,
    "end_to_end_latency_ratio": 1.0551, "peak_rss_mib": 2837.4, "cuda_peak_mib": None,
    "command": "python -m neckkit bench --codec elic --encoder clip-l --json --threads 1 --repeats 5 --device cpu",
}
THROUGHPUT = {
    "codec": "elic", "encoder": "clip-l", "device": "cpu", "threads": 1, "steps": 4, "batch": 4, "tiny": False,
    "rows": [
        {"mode": "uncached", "steps": 4, "steps_per_second": 0.025, "cache_build_seconds": None, "peak_rss_mib": 5012,
         "cuda_peak_mib": None, "precision": "float32", "wall_seconds": 190.2},
        {"mode": "cached", "steps": 4, "steps_per_second": 0.1, "cache_build_seconds": 21.5, "peak_rss_mib": 4590,
         "cuda_peak_mib": None, "precision": "float32", "wall_seconds": 90.0},
    ],
    "command": "python benchmarks/train_throughput.py --json --codec elic --encoder clip-l --threads 1 --steps 4 "
               "--batch 4 --device cpu",
}
MACHINE = {
    "cpu": "AMD EPYC", "logical_cores": 2, "ram_gib": 23.5, "gpu": None, "os": "Linux 6.1", "python": "3.11.7",
    "torch": "2.14.1", "transformers": "5.24.0", "date_utc": "2026-01-02 03:04", "commit": "abc1234",
    "uncommitted_changes": False,
}


def figures(**changes: object) -> dict:
    tic = {**ELIC, "codec": "tic", "neck_params": 13_060_096, "front_latency_ratio": 9.2512, "decode_seconds": 0.0312}
    return {"command": "python benchmarks/write_results.py --threads 1", "machine": MACHINE,
            "settings": {"tiny": False}, "bench": {"cpu": [ELIC, tic]}, "throughput": [THROUGHPUT], **changes}


def test_results_markdown_states_the_machine_and_the_commands() -> None:
    block = write_results.results_markdown(figures())
    assert block.startswith("Written by `python benchmarks/write_results.py --threads 1`.\n")
    assert ("**Machine**: AMD EPYC, 2 logical cores, 23.5 GiB RAM, no GPU; Linux 6.1, Python 3.11.7, torch 2.14.1, "
            "transformers 5.24.0; commit abc1234; 2026-01-02 03:04 UTC.") in block
    assert "No GPU on this machine: GPU rows not measured." in block
    assert f"```\n{ELIC['command']}\n" in block and f"{THROUGHPUT['command']}\n```" in block
    assert "1 thread, median of 5 rounds" in block


def test_results_markdown_bench_table() -> None:
    lines = write_results.results_markdown(figures()).splitlines()
    assert "| metric | elic + clip-l | tic + clip-l |" in lines
    for row in [
        "| neck parameters | 13,191,168 | 13,060,096 |",
        "| neck kMAC/pixel | 52.688 | 52.688 |",
        "| replaced parameters (synthesis + encoder front) | 33,398,275 (7,337,475 + 26,060,800) | "
        "33,398,275 (7,337,475 + 26,060,800) |",
        "| replaced kMAC/pixel (synthesis + encoder front) | 360.14 (254.97 + 105.17) | 360.14 (254.97 + 105.17) |",
        "| entropy decoding s | 0.293 | 0.0312 |",
        "| machine front s | 0.174 | 0.174 |",
        "| reconstruction front s | 1.09 | 1.09 |",
        "| front latency ratio | 6.25 | 9.25 |",
        "| machine end to end s | 3.93 | 3.93 |",
        "| reconstruction end to end s | 4.15 | 4.15 |",
        "| end-to-end latency ratio | 1.06 | 1.06 |",
        "| peak RSS MiB | 2,837 | 2,837 |",
    ]:
        assert row in lines
    assert not any(line.startswith("| peak CUDA MiB") for line in lines)


def test_results_markdown_one_codec() -> None:
    lines = write_results.results_markdown(figures(bench={"cpu": [ELIC]})).splitlines()
    assert "| neck parameters | 13,191,168 |" in lines
    assert "| front latency ratio | 6.25 |" in lines


def test_results_markdown_throughput_table() -> None:
    lines = write_results.results_markdown(figures()).splitlines()
    assert "| mode | steps/s | s/step | images/s | cache build s | peak RSS MiB |" in lines
    assert "| uncached | 0.0250 | 40.0 | 0.100 | - | 5,012 |" in lines
    assert "| cached | 0.100 | 10.0 | 0.400 | 21.5 | 4,590 |" in lines
    assert "Cache speed-up: 4.00x." in lines
    assert any("batch 4, 4 steps per mode, float32, 1 thread." in line for line in lines)


def test_results_markdown_gpu_rows() -> None:
    gpu_bench = {**ELIC, "device": "cuda", "cuda_peak_mib": 1234.4, "front_latency_ratio": 30.0}
    gpu_rows = [{**row, "precision": "bfloat16", "cuda_peak_mib": 20480, "steps_per_second": 2.0}
                for row in THROUGHPUT["rows"]]
    gpu_run = {**THROUGHPUT, "device": "cuda", "batch": 32, "steps": 20, "rows": gpu_rows}
    block = write_results.results_markdown(
        figures(machine={**MACHINE, "gpu": "NVIDIA H100"}, bench={"cpu": [ELIC], "cuda": [gpu_bench]},
                throughput=[THROUGHPUT, gpu_run])
    )
    lines = block.splitlines()
    assert "No GPU" not in block and "23.5 GiB RAM, GPU NVIDIA H100;" in block
    assert "| front latency ratio | 30.00 |" in lines and "| peak CUDA MiB | 1,234 |" in lines
    assert any("on cuda:" in line and "batch 32, 20 steps per mode, bfloat16" in line for line in lines)
    assert "| mode | steps/s | s/step | images/s | cache build s | peak RSS MiB | peak CUDA MiB |" in lines
    assert "| uncached | 2.00 | 0.500 | 64.0 | - | 5,012 | 20,480 |" in lines


# -- the script, end to end (tiny components) -------------------------------------------------------

def test_script_writes_the_block_into_a_copy_of_the_document(tmp_path: Path) -> None:
    doc, raw = tmp_path / "benchmarks.md", tmp_path / "figures.json"
    original = DOC.read_bytes()
    doc.write_bytes(original)
    done = run_script("--tiny", "--repeats", "1", "--train-steps", "1", "--codecs", "elic", "--doc", str(doc),
                      "--json", str(raw))
    assert done.returncode == 0, done.stderr[-3000:]
    text, before = doc.read_bytes().decode("utf-8"), original.decode("utf-8")
    assert outside(text) == outside(before)
    block = text[text.index(BEGIN):text.index(END)]
    assert re.search(r"^\*\*Machine\*\*: .+, \d+ logical cores, .+ GiB RAM, .+; .+ torch .+; commit \w+", block, re.M)
    assert re.search(r"^\| front latency ratio \| \d+\.\d\d \|$", block, re.M)
    assert re.search(r"^\| neck parameters \| [\d,]+ \|$", block, re.M)
    assert re.search(r"^\| uncached \| [\d.]+ \| [\d.]+ \| [\d.]+ \| - \| [\d,]+ \|$", block, re.M)
    assert re.search(r"^\| cached \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d,]+ \|$", block, re.M)
    assert "python -m neckkit bench --codec elic --encoder clip-l --json" in block
    figures = json.loads(raw.read_text())
    assert figures["bench"]["cpu"][0]["neck_params"] > 0
    assert [row["mode"] for row in figures["throughput"][0]["rows"]] == ["uncached", "cached"]
    if figures["machine"]["gpu"] is None:
        assert "No GPU on this machine: GPU rows not measured." in block
