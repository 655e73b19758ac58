"""The time / communication / cost model against hand-computed formulas and the paper's figures."""
import json
import math
import os

import pytest

from lars_jax import scaling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = scaling.load_models()
KNL = scaling.DEVICES["KNL 7250"]


# --- formulas, checked against numbers worked out by hand -----------------------------------------

def test_iterations_match_the_papers_table1_arithmetic():
    # Table 1: 100 epochs x 1.28M images / B.
    assert scaling.iterations(100, 512, 1.28e6) == 250_000
    assert scaling.iterations(100, 32768, 1.28e6) == pytest.approx(3906.25)
    assert scaling.iterations(90, 32768) == pytest.approx(90 * 1_281_167 / 32768)


def test_ring_allreduce_alpha_beta():
    # 2(p-1)/p * n / bw + 2(p-1) * alpha, p = 4, 1 GB at 1 GB/s, alpha = 1 us: 1.5 s + 6 us.
    assert scaling.ring_allreduce_time(1e9, 4, 1e9, 1e-6) == pytest.approx(1.5 + 6e-6, rel=1e-12)
    assert scaling.ring_allreduce_time(1e9, 1, 1e9, 1e-6) == 0.0
    # The bandwidth term tends to 2 n / bw however many devices: the ring's point.
    assert scaling.ring_allreduce_time(1e9, 10**6, 1e9, 0.0) == pytest.approx(2.0, rel=1e-5)


def test_tree_and_hierarchical_allreduce():
    # Binomial tree, p = 8: 2 * 3 steps of (alpha + n / bw).
    assert scaling.tree_allreduce_time(1e6, 8, 1e9, 1e-6) == pytest.approx(6 * (1e-6 + 1e-3))
    assert scaling.tree_allreduce_time(1e6, 5, 1e9, 0.0) == pytest.approx(6 * 1e-3)  # ceil(log2 5) = 3
    # One device per node: the flat ring over nodes.
    assert scaling.hierarchical_allreduce_time(1e8, 64, 1, 1e11, 1e-6, 1e10, 2e-6) == pytest.approx(
        scaling.ring_allreduce_time(1e8, 64, 1e10, 2e-6))
    # All devices in one node: the ring over the intra-node links.
    assert scaling.hierarchical_allreduce_time(1e8, 8, 8, 1e11, 1e-6, 1e10, 2e-6) == pytest.approx(
        scaling.ring_allreduce_time(1e8, 8, 1e11, 1e-6))
    # 4 nodes of 8: in-node ring of n, plus 8 rings of n/8 over 4 nodes, each at bw/8.
    n, expect = 1e8, 2 * 7 / 8 * 1e8 / 1e11 + 14 * 1e-6 + 2 * 3 / 4 * (1e8 / 8) / (1e10 / 8) + 6 * 2e-6
    assert scaling.hierarchical_allreduce_time(n, 32, 8, 1e11, 1e-6, 1e10, 2e-6) == pytest.approx(expect)


def test_overlap_hides_communication_behind_backprop_only():
    # t_backward = 2/3 of t_comp = 0.2 s.
    assert scaling.iteration_time(0.3, 0.1, overlap=0.0) == pytest.approx(0.4)
    assert scaling.iteration_time(0.3, 0.1, overlap=1.0) == pytest.approx(0.3)
    assert scaling.iteration_time(0.3, 0.5, overlap=1.0) == pytest.approx(0.6)
    assert scaling.iteration_time(0.3, 0.5, overlap=0.5) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        scaling.iteration_time(0.3, 0.1, overlap=1.5)


def test_predict_by_hand():
    model = scaling.ModelFacts("m", (8, 8, 3), 10, forward_flops=1e9, params=1_000_000)
    dev = scaling.Device("d", 1e12, None, 1, None, 1e9, 1e-6, 1e-6, 1000.0, 2.0)
    p = scaling.predict(model, dev, 4, 256, 10, efficiency=0.5, n_train=25_600, algorithm="ring")
    t_comp = 64 * 3e9 / 0.5e12
    t_comm = 2 * 3 / 4 * 4e6 / 1e9 + 6e-6
    assert (p.iterations, p.per_device_batch) == (1000, 64)
    assert p.t_comp == pytest.approx(t_comp) and p.t_comm == pytest.approx(t_comm)
    assert p.total_s == pytest.approx(1000 * (t_comp + t_comm))
    assert p.device_hours == pytest.approx(p.total_s * 4 / 3600)
    assert p.hardware_cost == 4000.0 and p.cloud_cost == pytest.approx(p.device_hours * 2.0)
    by_ips = scaling.predict(model, dev, 4, 256, 10, images_per_second=100.0, n_train=25_600)
    assert by_ips.t_comp == pytest.approx(0.64)
    with pytest.raises(ValueError):
        scaling.predict(model, dev, 4, 256, 10)


def test_fit_efficiency_inverts_predict():
    rn50 = MODELS["resnet50"]
    t = scaling.predict(rn50, KNL, 512, 32768, 90, efficiency=0.3, algorithm="ring").total_s
    assert scaling.fit_efficiency(t, rn50, KNL, 512, 32768, 90, algorithm="ring") == pytest.approx(0.3, rel=1e-6)


# --- model inputs against independent numbers --------------------------------------------------

def test_model_facts_against_published_counts():
    rn50, alexnet = MODELS["resnet50"], MODELS["alexnet"]
    assert rn50.params == 25_557_032  # torchvision's ResNet-50
    assert alexnet.params == 60_965_224  # BVLC AlexNet
    # torchvision's resnet50 weights table: 4.09 GFLOPS, counting a multiply-add once, i.e. ~8.2
    # GFLOPs; XLA skips padded taps: a few % lower.
    assert rn50.forward_flops == pytest.approx(8.2e9, rel=0.05)
    assert rn50.gradient_bytes() == 25_557_032 * 4


def test_builtin_flops_match_a_fresh_xla_count():
    """The built-in table (used when model_flops.json is absent) has not rotted."""
    for name in ("small_cnn", "alexnet_bn"):
        row = MODELS[name]
        fresh = scaling.compute_model_facts(name, row.input_shape, row.num_classes)
        assert fresh.params == row.params
        assert fresh.forward_flops == pytest.approx(row.forward_flops, rel=0.02)
        assert scaling.builtin_models()[name].forward_flops == pytest.approx(fresh.forward_flops, rel=0.02)


@pytest.mark.parametrize("name", ["model_flops.json", "scaling_gpu.json"])
def test_packaged_inputs_are_the_recorded_results(name):
    """The copies shipped as package data have not drifted from benchmarks/results/."""
    with open(os.path.join(ROOT, "benchmarks", "results", name)) as f:
        recorded = json.load(f)
    with open(os.path.join(os.path.dirname(scaling.MODEL_FLOPS_JSON), name)) as f:
        assert json.load(f) == recorded


def test_model_flops_json_rows_override_the_builtin_table(tmp_path):
    path = tmp_path / "model_flops.json"
    path.write_text(json.dumps({"jax": "x", "backend": "cpu", "rows": [
        {"name": "resnet50", "kwargs": {}, "input": [224, 224, 3], "num_classes": 1000, "params": 7, "gflops": 1.5},
        {"name": "resnet50", "kwargs": {"variant": "v1"}, "input": [224, 224, 3], "params": 9, "gflops": 9.0},
        {"name": "alexnet", "kwargs": {}, "input": [224, 224, 3], "params": 9, "gflops": 9.0}]}))
    models = scaling.load_models(str(path))
    assert (models["resnet50"].forward_flops, models["resnet50"].params) == (1.5e9, 7)
    assert models["alexnet"].forward_flops == MODELS["alexnet"].forward_flops  # other input size: ignored
    assert scaling.load_models(str(tmp_path / "absent.json"))["resnet50"].params == 25_557_032


def test_every_device_number_has_a_source():
    for dev in scaling.DEVICES.values():
        assert dev.sources, dev.name
        assert dev.peak_fp32 or dev.peak_low, dev.name
        keys = " ".join(dev.sources)
        assert "price" in keys, dev.name
        assert "peak" in keys, dev.name
    assert scaling.DEVICES["DGX-1"].price == 129_000  # You et al.'s cost comparison
    assert KNL.price == 2_436  # You et al.'s cost comparison
    assert KNL.peak_fp32 == pytest.approx(6.09e12, rel=1e-3)  # 68 cores x 1.4 GHz x 64


def test_device_catalogue_file_names_a_bad_entry(tmp_path):
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"devices": [{"name": "X", "peak_fp32": 1.0, "bandwidth": 2.0}]}))
    with pytest.raises(ValueError, match=r"device 'X': missing \['cloud_per_hour'.*unknown \['bandwidth'\]"):
        scaling.load_devices(str(path))


# --- the paper's figures -----------------------------------------------------------------------

def test_five_second_bound():
    assert scaling.five_second_bound() == 5.0  # 1e18 / 2e17
    assert scaling.five_second_bound(1e18, 3e17) == pytest.approx(10 / 3)  # later versions: "several"


def test_cost_comparison_4_1M_vs_1_2M():
    cost = scaling.cost_comparison()
    assert cost["dgx1_cost"] == 32 * 129_000 == 4_128_000
    assert round(cost["dgx1_cost"] / 1e5) / 10 == 4.1
    assert cost["knl_cost"] == 512 * 2_436 == 1_247_232
    assert cost["knl_cost"] == pytest.approx(1.2e6, rel=0.05)  # the chips alone already make it
    assert round(cost["ratio_of_rounded_figures"], 1) == 3.4  # the paper's "3.4x": 4.1 / 1.2
    assert cost["ratio"] == pytest.approx(3.31, abs=0.01)


def test_table1_shape():
    rows = scaling.table1(MODELS["alexnet_bn"], KNL, per_device_batch=64, efficiency=0.2)
    batches = [r["batch"] for r in rows]
    assert batches == [512 * 2 ** k for k in range(7)]
    its = [r["iterations"] for r in rows]
    comm_total = [r["comm_total_s"] for r in rows]
    t_iter = [r["t_iter"] for r in rows]
    assert its[0] == 250_000 and all(a == pytest.approx(2 * b) for a, b in zip(its, its[1:]))
    assert all(a > b for a, b in zip(comm_total, comm_total[1:]))  # communication falls with B
    assert comm_total[0] / comm_total[-1] > 50
    assert max(t_iter) / min(t_iter) < 1.1  # iteration time stays nearly flat as devices grow
    totals = [r["total_s"] for r in rows]
    assert all(a > b for a, b in zip(totals, totals[1:]))


CHECKS = scaling.paper_checks(MODELS)
ERRORS = {(r["fit_on"], r["case"]): r["error"] for r in CHECKS["rows"] if "fit_on" in r}
# Stated errors of the one-parameter KNL calibration (README, "Time, communication and cost model").
TOLERANCE = 0.25


def test_knl_calibration_fits_one_figure_and_predicts_the_others():
    # The fitted figure is reproduced exactly; that proves only that the solver works.
    assert ERRORS[("alexnet_knl512", "alexnet_knl512")] == pytest.approx(0.0, abs=1e-6)
    assert ERRORS[("resnet50_knl512", "resnet50_knl512")] == pytest.approx(0.0, abs=1e-6)
    # Out of sample: ResNet-50 1 h on 512 KNL and 20 min on 2,048 KNL from AlexNet's 24 min,
    # and AlexNet's 24 min from ResNet-50's 1 h.
    for key in [("alexnet_knl512", "resnet50_knl512"), ("alexnet_knl512", "resnet50_knl2048"),
                ("resnet50_knl512", "alexnet_knl512"), ("resnet50_knl512", "resnet50_knl2048")]:
        assert abs(ERRORS[key]) < TOLERANCE, (key, ERRORS[key])
    # The fitted KNL efficiency is a plausible fraction of peak (not > 1, not vanishing).
    for eff in CHECKS["fits"].values():
        assert 0.1 < eff < 0.5


def test_knl_calibration_is_not_vacuous():
    """A wrong input breaks the out-of-sample prediction: ResNet-50's FLOPs off by 2x."""
    wrong = dict(MODELS)
    m = MODELS["resnet50"]
    wrong["resnet50"] = scaling.ModelFacts("resnet50", m.input_shape, m.num_classes, 2 * m.forward_flops, m.params)
    errors = {(r["fit_on"], r["case"]): r["error"] for r in scaling.paper_checks(wrong)["rows"] if "fit_on" in r}
    assert abs(errors[("alexnet_knl512", "resnet50_knl512")]) > TOLERANCE


def test_m40_days_imply_a_plausible_efficiency():
    row = next(r for r in CHECKS["rows"] if "M40" in r["figure"])
    assert 0.1 < row["implied_efficiency"] < 0.6  # 1e18-ish ops in 14 days on a 7 TFLOPS GPU


def test_cli_writes_json_and_png(tmp_path):
    result = scaling.main(["--out", str(tmp_path)])
    doc = json.loads((tmp_path / "scaling.json").read_text())
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    assert doc["knl_efficiency"] == pytest.approx(result["knl_efficiency"])
    assert {r["device"] for r in doc["devices_table"]} >= {"M40", "P100", "KNL 7250", "Xeon 8160", "V100", "A100",
                                                           "H100", "H200", "TPU v3"}
    h200 = next(r for r in doc["devices_table"] if r["device"] == "H200")
    assert h200["throughput_source"].startswith("6863 img/s (measured here: bfloat16, our train step (LARS, layer "
                                                "statistics off), batch 256, jax 0.11.2, benchmarks/results/gpu_resnet50")
    assert all(math.isfinite(r["total_s"]) for r in doc["devices_table"])
    assert os.path.basename(scaling.MODEL_FLOPS_JSON) == "model_flops.json"


def test_cli_default_output_is_runs_scaling_under_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scaling.main(["--no-plot"])
    assert sorted(os.listdir(tmp_path)) == ["runs"]
    assert os.listdir(tmp_path / "runs" / "scaling") == ["scaling.json"]


def test_cli_measured_flag_reads_a_newer_measurement(tmp_path, capsys):
    newer = tmp_path / "scaling_gpu.json"
    newer.write_text(json.dumps({"jax": "9.9", "rows": [{"dtype": "bfloat16", "batch": 512, "images_per_second": 1}],
                                 "resnet50_images_per_second": {"H100": 12345.0, "A100": 3000.0}}))
    result = scaling.main(["--out", str(tmp_path / "out"), "--no-plot", "--measured", str(newer)])
    rows = {r["device"]: r for r in result["devices_table"]}
    assert rows["H100"]["t_comp"] == pytest.approx(32768 / rows["H100"]["devices"] / 12345.0)
    assert rows["A100"]["throughput_source"].startswith("3000 img/s (measured here")
    assert "12345 img/s (measured here: bfloat16, our train step, batch 512, jax 9.9" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--measured", "--model-flops"])
def test_cli_missing_input_file_is_one_line_naming_the_flag(tmp_path, flag):
    with pytest.raises(SystemExit) as exit_:
        scaling.main(["--out", str(tmp_path), "--no-plot", flag, str(tmp_path / "absent.json")])
    message = str(exit_.value.code)
    assert message.startswith(f"{flag}: no file ") and "\n" not in message
    assert not os.listdir(tmp_path)  # nothing written
