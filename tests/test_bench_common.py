"""bench/_common.py's shared helpers, each read by several benchmarks: where ComfyUI is imported from, the median,
the inputs of a step, the peers' calls and the header's version line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import affordance
from affordance.bench import _common as C
from affordance.controlnet import ControlNet, ControlNetConfig

# a stand-in ComfyUI checkout: the modules import_comfy reads
FILES = {
    "comfy/__init__.py": "",
    "comfy/options.py": "def enable_args_parsing(enable=True):\n    pass\n",
    "comfy/cli_args.py": "import types\nargs = types.SimpleNamespace(cpu=False, use_pytorch_cross_attention=False)\n",
    "comfy/cldm/__init__.py": "",
    "comfy/cldm/cldm.py": "",
    "comfy/controlnet.py": "",
    "comfy/ldm/__init__.py": "",
    "comfy/ldm/modules/__init__.py": "",
    # ComfyUI picks its attention when this module is imported, so the flag must be set before
    "comfy/ldm/modules/attention.py": "from comfy.cli_args import args\nSDPA = args.use_pytorch_cross_attention\n",
    "comfy/model_management.py": "",
}


@pytest.mark.parametrize("pytorch_attention", [False, True])
def test_import_comfy_imports_from_the_given_checkout(tmp_path, monkeypatch, pytorch_attention):
    """`--comfyui PATH` alone is enough (the comfy tests' conftest puts COMFYUI_PATH on sys.path itself), and
    `--comfy-pytorch-attention` reaches ComfyUI before it chooses its attention."""
    root = tmp_path / "FakeComfyUI"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(root)])
    saved = {k: v for k, v in sys.modules.items() if k == "comfy" or k.startswith("comfy.")}
    for k in saved:
        del sys.modules[k]
    try:
        comfy, why = C.import_comfy(root, torch.device("cpu"), pytorch_attention=pytorch_attention)
        assert why == "" and comfy is not None
        assert comfy.__file__ == str(root / "comfy" / "__init__.py")
        assert comfy.cli_args.args.cpu is True
        assert comfy.ldm.modules.attention.SDPA is pytorch_attention
    finally:
        for k in [k for k in sys.modules if k == "comfy" or k.startswith("comfy.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_median_of_odd_and_even_counts():
    """The median every benchmark reports (the smoke tests' single round cannot tell an odd count from an even one)."""
    assert C.median([3.0]) == 3.0
    assert C.median([5.0, 1.0, 3.0]) == 3.0
    assert C.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert C.median([10.0, 1.0, 2.0, 3.0, 100.0]) == 3.0


def test_inputs_have_the_shapes_of_a_real_step():
    """A step with SD's real text length, 77 CLIP tokens, cond and uncond alike."""
    config = C.config_for("sdxl")
    inp = C.make_inputs(config, 2, 64, torch.device("cpu"), torch.float32, seed=0)
    assert inp["context"].shape == (2, 77, config.context_dim)
    assert inp["x"].shape == (2, 4, 8, 8) and inp["hint"].shape == (2, 3, 64, 64)
    assert inp["t"].tolist() == [999.0, 1.0] and inp["y"].shape == (2, config.adm_in_channels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_inputs_and_weights_are_made_in_the_runs_dtype(dtype):
    """A GPU run is fp16: every input (SDXL's y and diffusers' added conditioning too) and every weight in that
    dtype, or the benchmark times another precision than the one it names (CPU runs are fp32 only)."""
    config = C.config_for("sdxl")
    inp = C.make_inputs(config, 2, 64, torch.device("cpu"), dtype, seed=0)
    tensors = [inp["x"], inp["hint"], inp["t"], inp["context"], inp["y"], *inp["added"].values()]
    assert {t.dtype for t in tensors} == {dtype}
    small = ControlNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), transformer_depth=(1, 0),
                             context_dim=32, num_heads=2)
    assert {v.dtype for v in C.random_state_dict(small, seed=0, dtype=dtype).values()} == {dtype}


def test_interleaved_ms_is_milliseconds_per_call(monkeypatch):
    """With a clock that advances 0.25 s per call (and not while synchronising), 250 ms per call in every round."""
    now = [0.0]

    def call():
        now[0] += 0.25

    monkeypatch.setattr(C.time, "perf_counter", lambda: now[0])
    out = C.interleaved_ms({"a": call, "b": call}, torch.device("cpu"), warmup=1, rounds=2, calls=4)
    assert out == {"a": [250.0, 250.0], "b": [250.0, 250.0]}


def test_cpu_peers_reports_diffusers_as_used_when_it_imports(monkeypatch, capsys):
    pytest.importorskip("diffusers")
    monkeypatch.setattr(C, "import_comfy", lambda root, device: (None, "no checkout"))
    comfy, use_diffusers, missing = C.cpu_peers(None, want_diffusers=True)
    assert comfy is None and use_diffusers is True and missing == {"comfyui": "no checkout"}
    assert C.cpu_peers(None, want_diffusers=False)[1] is False
    assert "diffusers: " in capsys.readouterr().out


def test_step_calls_diffusers_residuals_in_order():
    """The diffusers peer of bench_memory and bench_host_work hands back its residuals, middle last, as the others."""
    config = ControlNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), transformer_depth=(1, 0),
                              context_dim=32, num_heads=2)
    net = ControlNet(config).eval()
    inp = C.make_inputs(config, 2, 32, torch.device("cpu"), torch.float32, seed=0)
    down, mid = [torch.ones(1), torch.ones(2)], torch.zeros(3)
    seen = {}

    def fake_diffusers(x, t, **kwargs):
        seen.update(kwargs)
        return down, mid

    calls = C.step_calls(net, net.encode_hint(inp["hint"]), None, fake_diffusers, inp)
    assert list(calls) == ["ours", "ours, hint in call", "diffusers"]
    out = calls["diffusers"]()
    assert out == [*down, mid]
    assert seen["controlnet_cond"] is inp["hint"] and seen["encoder_hidden_states"] is inp["context"]


def test_package_version_names_the_commit():
    """The header's "affordance:" line names the commit the figures come from, in a git checkout."""
    root = Path(affordance.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    text = C.package_version()
    assert text.startswith(f"{root} at {head}")


def test_a_child_that_fails_after_printing_is_a_failure(tmp_path):
    """A child that printed its figure line and then failed (non-zero exit) is reported as failed, not trusted."""
    script = tmp_path / "child.py"
    script.write_text(
        "import json, sys\nprint(json.dumps({'peak': 1, 'seconds': 0.0}))\nprint('crashed at exit', file=sys.stderr)\nsys.exit(3)\n"
    )
    got = C.peak_in_child(str(script), "x")
    assert isinstance(got, str) and got.startswith("failed: ") and "crashed at exit" in got
    ok = tmp_path / "ok.py"
    ok.write_text("import json\nprint(json.dumps({'peak': 5, 'seconds': 0.5}))\n")
    assert C.peak_in_child(str(ok)) == {"peak": 5, "seconds": 0.5}


def test_package_version_without_git_names_the_folder(monkeypatch):
    """No git on the machine (a GPU image may lack it) or git timing out: the header names the folder, no crash."""
    root = Path(affordance.__file__).resolve().parent
    for error in (FileNotFoundError("git"), subprocess.TimeoutExpired("git", 10)):

        def no_git(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(C.subprocess, "run", no_git)
        assert C.package_version() == str(root)
