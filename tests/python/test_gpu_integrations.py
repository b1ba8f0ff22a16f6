"""The example integrations on the GPU (their CPU checks are in test_examples.py).

- examples/framework_calls.py: the call lines of diffusers, ComfyUI, KJNodes, xDiT/yunchang and
  SGLang diffusion, unchanged, against float64 attention (fp16 and bf16);
- examples/transformers_llama.py: a tiny Llama with attn_implementation="sage" and with
  patch_sdpa under attn_implementation="sdpa": logits within 1e-2 (relative L2) of plain SDPA,
  every unmasked attention call routed, masked ones counted as fallbacks;
- examples/diffusers_processor.py: the diffusers-style processor against float64.
"""

import os
import sys

import pytest
import torch

from conftest import REPO_ROOT

pytestmark = pytest.mark.gpu

sys.path.insert(0, os.path.join(REPO_ROOT, "examples"))


@pytest.fixture(autouse=True)
def _library_present(library):
    yield


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_framework_calls(dtype, capsys):
    import framework_calls

    status = framework_calls.main(["--require-gpu", "--dtype", dtype])
    report = capsys.readouterr().out
    assert status == 0, report


def test_transformers_llama_routes_and_matches_sdpa():
    pytest.importorskip("transformers")
    import transformers_llama

    rows = transformers_llama.compare("cuda", torch.float16)
    layers = transformers_llama.LAYERS
    for name, error, stats in rows:
        assert error < transformers_llama.MAX_REL_L2, (name, error)
        if "mask" in name:
            assert stats["routed"] == 0 and stats["fallbacks"] == {"attn_mask": layers}, (name, stats)
        else:
            assert stats["routed"] == layers and not stats["fallbacks"], (name, stats)


def test_diffusers_processor_matches_float64():
    import diffusers_processor

    for name, ours, sdpa, stats in diffusers_processor.compare("cuda", torch.float16):
        assert ours < diffusers_processor.MAX_REL_L1, (name, ours, sdpa)
        expected_routed = 0 if "mask" in name else 1
        assert stats["routed"] == expected_routed, (name, stats)
