"""`python -m sageattention {demo,bench,info}` as a user runs them (subprocesses).

The CPU versions hide every GPU (CUDA_VISIBLE_DEVICES="") so they behave the same on a GPU
machine; the GPU versions run small sizes.
"""

import json
import subprocess
import sys

import pytest


def run_cli(args, env, hide_gpus=False, timeout=600):
    env = dict(env)
    if hide_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([sys.executable, "-m", "sageattention", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_without_gpu_runs_cpu_reference(library, subprocess_env):
    done = run_cli(["demo"], subprocess_env, hide_gpus=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No CUDA GPU" in done.stdout
    assert "emulated per_thread, smooth_k=True" in done.stdout and "rel L1" in done.stdout


def test_bench_without_gpu_exits_2(subprocess_env):
    done = run_cli(["bench"], subprocess_env, hide_gpus=True)
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr


def test_info(library, subprocess_env):
    done = run_cli(["info"], subprocess_env)
    assert done.returncode == 0 and "kernels compiled for" in done.stdout


def test_no_command_is_a_usage_error(subprocess_env):
    assert run_cli([], subprocess_env).returncode == 2


@pytest.mark.gpu
def test_demo_on_gpu(library, subprocess_env):
    done = run_cli(["demo", "--seqlen", "2048", "--heads", "4"], subprocess_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "speed-up" in done.stdout and "sageattn" in done.stdout


@pytest.mark.gpu
def test_bench_on_gpu_writes_json(library, subprocess_env, tmp_path):
    path = tmp_path / "bench.json"
    done = run_cli(["bench", "--batch", "1", "--heads", "2", "--head-dims", "64", "--seqlens", "256", "1000",
                    "--json", str(path)], subprocess_env)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(path.read_text())
    assert len(data["results"]) == 4  # 2 seqlens x causal both
    for row in data["results"]:
        assert "tops" in row["methods"]["sage"], row
        err = row.get("sage_rel_l1_vs_sdpa")
        assert err is None or err < 5e-2, row
    assert data["env"]["gpu"]
