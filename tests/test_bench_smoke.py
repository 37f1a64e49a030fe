"""The benchmark harness runs end to end at a tiny size (its figures are measured elsewhere, never here)."""
import json

import pytest

from benchmarks import bench_vs_torch
from conftest import FAST_COMPILE


@pytest.mark.slow
def test_bench_vs_torch_smoke(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench_vs_torch.main(["--model", str(tiny_ckpt), "--frames", "3", "--size", "16", "--steps", "8", "--seeds", "2",
                         "--chunk-size", "2", "--repeat", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed.strip().splitlines()[-1].startswith("speed-up (torch time / JAX time): ")
    result = json.loads(out.read_text())
    assert [s["side"] for s in result["sides"]] == ["jax", "torch"]
    for side in result["sides"]:
        assert len(side["runs"][0]["losses"]) == 3 and side["seconds"] > 0 and side["peak_mb"] > 0
    assert result["speedup"] > 0


@pytest.mark.slow
def test_fidelity_benchmark_smoke(tiny_ckpt, tmp_path, capsys):
    from benchmarks import fidelity

    out = tmp_path / "fidelity.json"
    fidelity.main(["--model", str(tiny_ckpt), "--input", "demo", "--frames", "2", "--size", "16", "--budgets", "8",
                   "--variants", "zscore;sink:z=3,black=0.1", "--out", str(out)])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("median PSNR at 8 steps: zscore ")
    result = json.loads(out.read_text())
    assert [(p["variant"], p["steps"]) for p in result["points"]] == [("zscore", 8), ("sink:z=3,black=0.1", 8)]
    assert all(len(p["per_frame_psnr"]) == 2 and p["seconds"] > 0 for p in result["points"])
    assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.slow
def test_realtime_smoke(tiny_ckpt, tmp_path, capsys, monkeypatch):
    from benchmarks import realtime

    monkeypatch.setenv("XLA_FLAGS", FAST_COMPILE)  # its renders are children: compiled as this process's programs are

    out = tmp_path / "realtime.json"
    realtime.main(["--input", "demo", "--start", "0", "--size", "16", "--max-frames", "4", "--short", "2",
                   "--model", str(tiny_ckpt), "--matmul-size", "64", "--roofline-frames", "2", "--roofline-steps", "4",
                   "--out", str(out)])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("projected wall / video duration: ")
    result = json.loads(out.read_text())
    assert (result["long"]["frames"], result["short"]["frames"]) == (4, 2)
    assert result["long"]["command"].startswith("-m badapple_jax render demo -o ")
    for key in ("fixed_seconds", "per_frame_seconds", "projected_wall_seconds", "ratio", "load_before"):
        assert key in result
    assert result["video_seconds"] == 3481 / 15
    assert result["long"]["cpu_seconds"] > 0  # the command's own CPU time, children included
    roof = result["roofline"]
    # tiny: d_head 16; 17 tokens, below loss.STRIPS_FROM: one strip, the sink's rows 1..16 by all 17 columns
    assert roof["tokens"] == 17 and roof["step_flops"] == 6 * 16 * 17 * 16  # qk: no projection in the step
    assert roof["all_logits_flops"] == 6 * 17**2 * 16
    assert roof["matmul_gflops"] > 0 and roof["chunk_seconds"][0] > 0
