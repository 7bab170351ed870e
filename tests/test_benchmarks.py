"""Smoke tests of the benchmark scripts at tiny sizes: they run, measure both sides, write JSON.

The timings themselves are never asserted (benchmarks print ratios; tests only check that every
measurement is there, positive and written)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from scripts import load_script

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _script(name):
    return load_script("benchmarks", name)


@pytest.mark.slow
def test_bench_sampler_tiny(tmp_path):
    results = _script("bench_sampler").main(
        ["--tiny", "--parts", "dowhy,grid", "--dowhy-families", "linear", "--rngs", "hash",
         "--out", str(tmp_path)])
    dowhy = [r for r in results if r["part"] == "dowhy"]
    grid = [r for r in results if r["part"] == "grid"]
    assert [(r["family"], r["n"]) for r in dowhy] == [("linear", 1000)]
    # the printed speed-up is the ratio of the two measured rates
    assert dowhy[0]["speedup"] == pytest.approx(
        dowhy[0]["ours_rows_per_s"] / dowhy[0]["dowhy_rows_per_s"])
    assert {r["family"] for r in grid} == {"linear", "trees"}
    assert {r["strategy"] for r in grid} >= {"walk", "parallel"}
    for r in grid:  # rates agree with each other; CPU: no roofline share
        assert r["rows_per_s"] == pytest.approx(r["datasets_per_s"] * r["n"])
        assert r["rows_per_s"] > 0 and r["roofline"] is None
    written = json.loads((tmp_path / "bench_sampler.json").read_text())
    assert len(written["results"]) == len(results) and (tmp_path / "bench_sampler.png").exists()


def test_bench_sampler_models_users_have_tiny(tmp_path):
    """The auto-assigned DoWhy model and our fitted ensembles, each next to DoWhy in the same
    run: the printed ratios are those of the measured rates, the work per row is counted."""
    results = _script("bench_sampler").main(
        ["--tiny", "--parts", "auto,fitted", "--rngs", "hash", "--out", str(tmp_path)])
    auto = [r for r in results if r["part"] == "auto"]
    fitted = [r for r in results if r["part"] == "fitted"]
    assert [(r["quality"], r["d"], r["n"]) for r in auto] == [("good", 8, 1000)]
    assert [(r["dataset"], r["k"]) for r in fitted] == [("pima", 4)]
    for r in auto:
        assert r["speedup"] == pytest.approx(r["ours_rows_per_s"] / r["dowhy_rows_per_s"])
        assert r["walk_speedup"] == pytest.approx(r["walk_rows_per_s"] / r["dowhy_rows_per_s"])
    for r in fitted:
        assert r["speedup"] == pytest.approx(r["ours_datasets_per_s"] / r["dowhy_datasets_per_s"])
        assert "linear" in r["families"]
    assert all(r["madds_per_row"] > 0 for r in auto + fitted)


def test_roofline_share_on_a_gpu(monkeypatch):
    bench = _script("bench_sampler")
    h100 = SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(bench.jax, "devices", lambda: [h100])
    assert bench.roofline(3.35e12, 2.0) == pytest.approx(0.5)
    monkeypatch.setattr(bench.jax, "devices",
                        lambda: [SimpleNamespace(platform="gpu", device_kind="Some GPU")])
    assert bench.roofline(1e9, 1.0) is None  # unknown peak bandwidth: no share printed


def test_bench_stream_small(tmp_path):
    result = _script("bench_stream").main(
        ["--rows", "2e5", "--chunk-rows", "50000", "--rng", "hash", "--out", str(tmp_path)])
    assert result["rows"] == 200_000 and result["parquet_mib"] > 0
    assert result["rows_per_s"] == pytest.approx(200_000 / result["seconds"])
    assert json.loads((tmp_path / "bench_stream.json").read_text())["rows"] == 200_000


@pytest.mark.slow
def test_bench_discovery_small(tmp_path):
    results = _script("bench_discovery").main(
        ["--bootstrap", "2", "--n-jobs", "1", "--out", str(tmp_path)])
    simulated = results[0]
    assert simulated["table"] == "simulated_1000x20" and simulated["warm_s"] > 0
    assert 0 <= simulated["mean_P_absent"] < simulated["mean_P_true"] <= 1
    assert json.loads((tmp_path / "bench_discovery.json").read_text())["results"] == results


@pytest.mark.slow
def test_bench_fit_small(tmp_path):
    rows = _script("bench_fit").main(
        ["--k", "2", "--dowhy-k", "1", "--n", "300", "--d", "8", "--skip-suite",
         "--out", str(tmp_path)])
    (row,) = rows
    assert row["k"] == 2 and row["dowhy_total_is_scaled"] and row["causaljax_warm_compiles"] == 0
    assert row["dowhy_total_s"] == pytest.approx(2 * row["dowhy_per_dag_s"][0])  # scaled to k
    assert row["speedup_warm"] == pytest.approx(row["dowhy_total_s"] / row["causaljax_warm_s"])
    assert row["speedup_cold"] == pytest.approx(row["dowhy_total_s"] / row["causaljax_cold_s"])
    assert json.loads((tmp_path / "bench_fit.json").read_text())["rows"][0]["k"] == 2


@pytest.mark.timeout(1300)  # a CPU shared with other tests: the smoke's limits only catch hangs
def test_device_check_smoke(tmp_path):
    """benchmarks/device_check.sh --smoke: every part runs (CPU sizes) and the report holds each
    figure with the device it was measured on; the fine-tuning step's figures are consistent."""
    import subprocess
    import sys

    out = tmp_path / "dc"
    res = subprocess.run(["bash", str(BENCHMARKS / "device_check.sh"), "--smoke", str(out)],
                         capture_output=True, text=True, timeout=1200,
                         env={**__import__("os").environ, "PYTHON": sys.executable})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "device_check.json").read_text())
    assert report["device"].startswith("cpu") and not report["failed"]
    assert set(report["parts"]) == {"sampler", "prior_4", "prior_8", "finetune", "pretrain"}
    grid = [r for r in report["results"] if r.get("part") == "grid"]
    assert {(r["family"], r["k"]) for r in grid} == {(f, k) for f in ("linear", "mlp")
                                                      for k in (4, 16)}
    assert all(r["rows_per_s"] > 0 and r["roofline"] is None for r in grid)  # CPU: no roofline
    trees = [r for r in report["results"] if r.get("part") == "dowhy"]
    assert trees and all(r["speedup"] == pytest.approx(r["ours_rows_per_s"]
                                                       / r["dowhy_rows_per_s"]) for r in trees)
    assert sorted(r["features"] for r in report["results"] if "features" in r) == [4, 8]
    assert any(r["what"].startswith("pretraining step") for r in report["results"])
    md = (out / "device_check.md").read_text()
    assert md.startswith("# Device check: cpu") and md.count("\n|") == len(report["results"]) + 2
    data = json.loads((out / "finetune_step.json").read_text())
    assert data["ratio_causalmix_over_real"] > 0 and data["rows_per_step"] == 64
    assert set(data["runs_per_hour"]) == {"real", "causalmix"}
    ms = data["step_ms"]  # the reported ratios and share are those of the step times
    assert data["ratio_dense_over_real"] == pytest.approx(ms["causalmix_dense"] / ms["real"])
    assert data["draw_share"] == pytest.approx((ms["causalmix"] - ms["pool"]) / ms["causalmix"])
    assert data["families"] == "linear,mlp,trees"


def test_device_report_names_a_failed_part(tmp_path):
    (tmp_path / "device.txt").write_text("NVIDIA H200 x1 (gpu), jax 0.0")
    (tmp_path / "parts.txt").write_text("prior_20 0 12\nprior_100 124 60\n")
    (tmp_path / "prior_20.log").write_text('{"rows": 1024, "features": 20, "batch": 64, '
                                           '"rng": "key", "datasets_per_s": 5000.0}\n')
    (tmp_path / "prior_100.log").write_text("compiling ...\n")
    assert _script("device_report").main([str(tmp_path)]) == 1
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert list(report["failed"]) == ["prior_100"] and "compiling" in \
        report["failed"]["prior_100"]["log_tail"]
    assert [r["datasets_per_s"] for r in report["results"]] == [5000.0]
    md = (tmp_path / "device_check.md").read_text()
    assert "# Device check: NVIDIA H200" in md and "part prior_100: exit 124" in md
