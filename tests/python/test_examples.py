"""The example scripts and the integrations they show, on the CPU.

Without a GPU every attention call falls back to torch SDPA: the integrations must then give exactly
SDPA's result and count why. examples/framework_calls.py runs in full with an exact stand-in for the
kernel, which checks the script's own plumbing (layouts, packing, the ring-attention LSE merge).
The GPU runs of the same scripts are in test_gpu_integrations.py.
"""

import os
import subprocess
import sys

import pytest
import torch

from sageattention import core

import exact_reference
from conftest import REPO_ROOT

EXAMPLES = os.path.join(REPO_ROOT, "examples")
SCRIPTS = ["framework_calls.py", "transformers_llama.py", "diffusers_processor.py"]

if not os.path.isdir(EXAMPLES):  # pragma: no cover - tests copied without the repository
    pytest.skip("examples/ is not next to the tests", allow_module_level=True)
sys.path.insert(0, EXAMPLES)

import diffusers_processor  # noqa: E402
import framework_calls  # noqa: E402

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU run is in test_gpu_integrations.py")


@no_gpu
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_say_they_need_a_gpu(script, capsys):
    module = __import__(script[:-3])
    for args, status in (([], 0), (["--require-gpu"], 2)):
        with pytest.raises(SystemExit) as done:
            module.main(args)
        assert done.value.code == status
        assert "needs a CUDA GPU" in capsys.readouterr().out


@no_gpu
def test_a_script_runs_as_a_program(subprocess_env):
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, "framework_calls.py")], env=subprocess_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "needs a CUDA GPU" in done.stdout, done.stderr


def test_framework_calls_with_an_exact_kernel(monkeypatch):
    monkeypatch.setattr(framework_calls, "DEVICE", "cpu")
    monkeypatch.setattr(core, "sageattn", exact_reference.exact_sageattn)
    monkeypatch.setattr(framework_calls, "sageattn", exact_reference.exact_sageattn)
    monkeypatch.setattr(framework_calls, "sageattn_varlen", exact_reference.exact_sageattn_varlen)
    monkeypatch.setattr(core, "validate_call", lambda *a, **kw: (None, 1, None, 0, 0, None, None))  # layout NHD
    gen = torch.Generator().manual_seed(0)
    for framework, call, case in framework_calls.CASES:
        error, lse_error = case(torch.float32, gen)
        assert error < 1e-5, (framework, call, error)
        assert lse_error is None or lse_error < 1e-5, (framework, call, lse_error)


def test_diffusers_processor_falls_back_exactly_on_cpu():
    rows = diffusers_processor.compare("cpu", torch.float32)
    assert len(rows) == 4
    for name, ours, sdpa, stats in rows:
        assert ours == sdpa, name  # the same SDPA computed the same numbers
        assert stats["routed"] == 0
        assert stats["fallbacks"] == ({"attn_mask": 1} if "mask" in name else {"device": 1})


def test_transformers_integrations_fall_back_exactly_on_cpu():
    pytest.importorskip("transformers")
    import transformers_llama

    rows = transformers_llama.compare("cpu", torch.float32)
    assert len(rows) == 4
    for name, error, stats in rows:
        assert error == 0.0, name
        reason = "attn_mask" if "mask" in name else "device"
        assert stats == {"routed": 0, "fallbacks": {reason: transformers_llama.LAYERS}, "total": transformers_llama.LAYERS}
