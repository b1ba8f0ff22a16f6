"""The pre-pass / attention split of bench --breakdown and smoke.py, on synthetic profiler rows
(the profiling itself needs a GPU)."""

import pytest

from sageattention._profile import prepass_kernels_text, split_prepass


def test_split_counts_our_kernels_by_role():
    times = [
        ("void sageattn::(anonymous namespace)::k_column_sums_kernel<__half, 128>(sageattn::QuantizeArgs)", 50.0, 1),
        ("void sageattn::(anonymous namespace)::quantize_qk_kernel<__half, 128>(sageattn::QuantizeArgs)", 150.0, 1),
        ("void sageattn::(anonymous namespace)::v_stats_kernel<__half>(sageattn::QuantizeVArgs)", 60.0, 1),
        ("void sageattn::(anonymous namespace)::quantize_v_kernel<__half>(sageattn::QuantizeVArgs)", 90.0, 1),
        ("void sageattn::sm90::attention_sm90_kernel<__half, false>(sageattn::AttentionArgs)", 1650.0, 1),
        ("void at::native::elementwise_kernel<128, 2>(...)", 20.0, 3),  # torch's own (padding copy)
    ]
    split = split_prepass(times)
    assert split["attention_us"] == pytest.approx(1650.0)
    assert split["prepass_us"] == pytest.approx(350.0)
    assert split["other_us"] == pytest.approx(20.0)
    assert split["total_us"] == pytest.approx(2020.0)
    assert split["launches"] == pytest.approx(5)  # torch's kernels are not ours
    assert split["prepass_share"] == pytest.approx(350.0 / 2020.0)
    # Per pre-pass kernel, largest first; neither the attention kernel nor torch's are listed.
    assert list(split["prepass_kernels"].items()) == [
        ("quantize_qk_kernel", pytest.approx(150.0)),
        ("quantize_v_kernel", pytest.approx(90.0)),
        ("v_stats_kernel", pytest.approx(60.0)),
        ("k_column_sums_kernel", pytest.approx(50.0)),
    ]


def test_prepass_kernels_of_one_name_add_up():
    """Instantiations of one kernel (several dtypes or head dims in a profile) are summed under its
    short name."""
    times = [
        ("void sageattn::(anonymous namespace)::quantize_kernel<__half, false, 128>(sageattn::QuantizeArgs, "
         "sageattn::QuantizeVArgs)", 177.0, 1),
        ("void sageattn::(anonymous namespace)::quantize_kernel<__nv_bfloat16, false, 128>(sageattn::QuantizeArgs, "
         "sageattn::QuantizeVArgs)", 23.0, 1),
        ("void sageattn::(anonymous namespace)::stats_kernel<__half, 128, true>(sageattn::QuantizeArgs, "
         "sageattn::QuantizeVArgs)", 26.0, 1),
    ]
    split = split_prepass(times)
    assert split["prepass_kernels"] == {"quantize_kernel": pytest.approx(200.0), "stats_kernel": pytest.approx(26.0)}
    assert prepass_kernels_text(split) == "quantize_kernel 200, stats_kernel 26"


def test_split_of_nothing_is_zero():
    split = split_prepass([])
    assert split["total_us"] == 0 and split["prepass_share"] == 0.0 and split["launches"] == 0
    assert split["prepass_kernels"] == {}
    assert prepass_kernels_text(split, "no pre-pass kernel") == "no pre-pass kernel"
