"""Effective FLOPs: Kinetics' cost model pinned to numbers worked out by hand from its formula
(``cost_model/utils.py::dense_cost`` of github.com/Infini-AI-Lab/Kinetics), and how a sweep
charges them to pooled points."""

from types import SimpleNamespace

import pytest
from reasoning.benchmarks import results_tables
from reasoning.benchmarks.compute import (
    KINETICS_INTENSITY,
    ComputeModel,
    ExtendedComputeModel,
    KineticsCost,
    ModelShape,
)
from reasoning.benchmarks.sweep import PoolCost

# A small shape: P = 1,000 parameters, L = 2 layers, 2 query heads and 1 KV head of dim 4, so
# d = 8 and d_kv = 4. Kinetics' scripts pass head_dim · layers = 8 as ``head_dim``, so its
# num_attn_heads · head_dim = 2 · 8 = 16 = d·L and num_kv_heads · head_dim = 1 · 8 = 8 = d_kv·L.
SHAPE = ModelShape(params=1000, layers=2, d_attn=8, d_kv=4)
KINETICS = KineticsCost(SHAPE, intensity=100.0)


def test_dense_cost_is_kinetics_formula():
    # context 10, generation 5, 3 trials, I = 100:
    # compute = (2·P·g + 2·(2c + g)·g·16)·N = (2·1000·5 + 2·25·5·16)·3 = (10,000 + 4,000)·3 = 42,000
    # memory  = 2·(2c + g·N)·g·8·I        = 2·(20 + 15)·5·8·100             = 280,000
    compute, memory = KINETICS.dense_cost(10, 5, 3)
    assert compute == pytest.approx(42_000)
    assert memory == pytest.approx(280_000)
    # The weight-read term is commented out in their code: memory does not grow with P.
    assert KineticsCost(ModelShape(1e9, 2, 8, 4), 100.0).dense_cost(10, 5, 3)[1] == pytest.approx(280_000)
    # The prompt's KV is read once for all trials: 3 trials cost less memory than 3 single ones.
    # single: 2·(20 + 5)·5·8·100 = 200,000 each, 600,000 for three against 280,000.
    assert KINETICS.dense_cost(10, 5, 1)[1] == pytest.approx(200_000)


def test_a_calls_cost_averages_dense_cost_over_its_own_lengths_as_expected_cost_does():
    # Two samples of 2 and 6 tokens after a 10-token prompt, N = 2:
    # g=2: compute (2·1000·2 + 2·22·2·16)·2 = (4,000 + 1,408)·2 = 10,816; memory 2·(20 + 4)·2·8·100 = 76,800
    # g=6: compute (2·1000·6 + 2·26·6·16)·2 = (12,000 + 4,992)·2 = 33,984; memory 2·(20 + 12)·6·8·100 = 307,200
    # means: 22,400 + 192,000 = 214,400
    assert KINETICS.expected_cost(10, [2, 6], 2) == (pytest.approx(22_400), pytest.approx(192_000))
    assert KINETICS.call(10, [2, 6]) == pytest.approx(214_400)
    # No prefill term: a call that generates nothing costs nothing, however long its prompt.
    assert KINETICS.call(10_000, []) == 0.0
    # Without native n each sample is its own request and reads the prompt itself
    # (the prompt counted once per copy: 20 = 2 × 10):
    # g=2: 5,408 + 2·(20 + 2)·2·8·100 = 5,408 + 70,400 = 75,808
    # g=6: 16,992 + 2·(20 + 6)·6·8·100 = 16,992 + 249,600 = 266,592      sum 342,400
    assert KINETICS.call(20, [2, 6], separate_requests=True) == pytest.approx(342_400)


def test_the_prompt_kv_read_is_the_part_a_batched_call_pays_whatever_its_n():
    # shared = 2·2·c·ḡ·d_kv·L·I = 4·10·4·4·2·100 = 128,000 (ḡ = (2 + 6)/2 = 4)
    assert KINETICS.shared(10, [2, 6]) == pytest.approx(128_000)
    # A direct run drawing one of the two samples pays, in expectation, the mean of
    # dense_cost(10, g, 1) over g ∈ {2, 6} = (75,808 + 266,592)/2 = 171,200, which is
    # shared + (1/2)·(call − shared) = 128,000 + 86,400/2.
    assert KINETICS.shared(10, [2, 6]) + (KINETICS.call(10, [2, 6]) - KINETICS.shared(10, [2, 6])) / 2 \
        == pytest.approx(171_200)


def test_kinetics_intensity_is_their_scripts_e_flops():
    assert KINETICS_INTENSITY == 562.5  # cost_model_ntrial.py / cost_model_genlen.py: E_flops = 562.5
    assert KineticsCost(SHAPE).intensity == 562.5 and ComputeModel(SHAPE).intensity == 562.5


def test_the_sweeps_compute_model_records_all_three_measures():
    model = ComputeModel(SHAPE, intensity=100.0, extended_intensity=50.0, batch=4)
    got = model.call(10, [2, 6])
    extended = ExtendedComputeModel(SHAPE, 50.0, 4).call(10, [2, 6])
    assert got == {"flops": extended[0], "eflops": pytest.approx(214_400), "eflops_extended": extended[1]}
    # FLOPs: prefill 2·1000·10 + 2·2·8·100 = 23,200; decode 2·1000·8 + 4·2·8·(10·2 + 2 + 10·6 + 18) = 16,000 + 6,400
    assert got["flops"] == pytest.approx(23_200 + 16_000 + 6_400)
    shared = model.shared(10, [2, 6], cached_prompt_tokens=4)
    # prefill of the 6 uncached tokens: 2·1000·6 + 2·2·8·(100 − 16) = 12,000 + 2,688
    assert shared == {"flops": pytest.approx(14_688), "eflops": pytest.approx(128_000),
                      "eflops_extended": pytest.approx(14_688)}


def test_a_pooled_point_is_charged_the_prompt_kv_read_once_and_k_over_n_of_the_rest():
    model = ComputeModel(SHAPE, intensity=100.0)
    trace = [{"id": 1, "kind": "generate",
              "usage": {"prompt_tokens": 10, "cached_prompt_tokens": 0, "completion_tokens": 8, "calls": 1},
              "completions": [{"completion_tokens": 2}, {"completion_tokens": 6}],
              "request": {"n": 2, "max_tokens": 6}}]
    pool = {"tokens": 18.0, "completion_tokens": 8.0, "calls": 1.0, **model.of_trace(trace)}
    backend = SimpleNamespace(capabilities=SimpleNamespace(native_n=True), prices=lambda: (0.0, 0.0), params=None)
    result = SimpleNamespace(trace=SimpleNamespace(to_list=lambda: trace))
    samples = [SimpleNamespace(trace_id=1), SimpleNamespace(trace_id=1)]
    cost = PoolCost.of(result, samples, pool, backend, model)
    assert cost.fixed["eflops"] == pytest.approx(128_000)
    assert cost.at(2)["eflops"] == pytest.approx(214_400)
    assert cost.at(1)["eflops"] == pytest.approx(171_200)  # the hand-computed direct run at k = 1 above


def test_on_the_half_billion_model_the_extended_weight_term_dominates_and_kinetics_does_not():
    # Qwen2.5-Coder-0.5B as the sweeps ran it: P = 494,032,768 (all but the input embedding;
    # its LM head is untied in the converted checkpoint), 24 layers, 14 × 64 query, 2 × 64 KV.
    shape = ModelShape(494_032_768, 24, 896, 128)
    # One sample of 300 tokens after 90: compute 2·P·300 + 2·(180 + 300)·300·896·24
    # = 296,419,660,800 + 6,193,152,000 = 302,612,812,800; memory 2·480·300·128·24·562.5
    # = 497,664,000,000: eFLOPs / compute ≈ 2.645.
    compute, memory = KineticsCost(shape).dense_cost(90, 300, 1)
    assert compute == pytest.approx(302_612_812_800) and memory == pytest.approx(497_664_000_000)
    flops, extended = ExtendedComputeModel(shape).call(90, [300])
    assert extended / flops > 5  # weight reads at batch 64 and H100's 295 FLOP/byte


@pytest.mark.skipif(not (results_tables.RESULTS / results_tables.SWEEPS).is_dir(), reason="raw results ship only in a checkout")
def test_the_kinetics_table_uses_the_shape_the_sweeps_ran_with(monkeypatch):
    row = results_tables.jsonl(results_tables.RESULTS / results_tables.SWEEPS / "sc_vs_genrm_gsm8k" / "problems.jsonl")[0]
    assert results_tables.prefill_params(row) == pytest.approx(494_032_768, abs=1)
    monkeypatch.setattr(results_tables, "SWEEP_SHAPE", ModelShape(358_000_000, 24, 896, 128))
    with pytest.raises(ValueError, match="imply P = 494,032,768"):
        results_tables.kinetics(results_tables.RESULTS)
