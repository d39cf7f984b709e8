"""Provenance of tests/fixtures/control_*_keys.json: regenerate each key set from ComfyUI and compare.

The fixtures are the exact key -> shape tables of the official ControlNet layouts (lllyasviel's
``control_v11p_sd15_*`` files without the ``control_model.`` prefix, and the SD2.1 and full-size SDXL
equivalents), read from an independent implementation: ComfyUI's ``comfy.cldm.cldm.ControlNet``,
instantiated on the meta device. ``tests/unit/controlnet/test_official_keys.py`` holds our network to them
without needing ComfyUI.

To rewrite the fixtures from a ComfyUI checkout (then review the diff)::

    AFFORDANCE_WRITE_FIXTURES=1 COMFYUI_COMMIT=<sha> COMFYUI_PATH=... pytest tests/comfy/test_key_fixtures.py
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
import torch

from affordance.controlnet.keymap import original_to_diffusers

pytestmark = pytest.mark.comfy

FAMILIES = ("sd15", "sd21", "sdxl")
WRITE = os.environ.get("AFFORDANCE_WRITE_FIXTURES") == "1"
WHAT = {
    "sd15": "SD1.5 ControlNet; the key set of lllyasviel's control_v11p_sd15_*.pth/.safetensors without the "
    "'control_model.' prefix",
    "sd21": "SD2.1 ControlNet (context 1024, linear projections, 64-channel heads)",
    "sdxl": "full-size SDXL ControlNet (context 2048, label width 2816, transformer depth [0,0,2,2,10,10], middle 10)",
}


def shapes(sd: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in sorted(sd.items())}


def comfy_commit(comfyui_path: Path) -> str:
    if os.environ.get("COMFYUI_COMMIT"):
        return os.environ["COMFYUI_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "-C", str(comfyui_path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def write_fixture(path: Path, source: str, keys: dict[str, list[int]]) -> None:
    """JSON with one key per line, so that a diff of a regenerated fixture reads well."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in keys.items()]
    text = '{\n "source": ' + json.dumps(source) + ',\n "keys": {\n' + ",\n".join(lines) + "\n }\n}\n"
    path.write_text(text)


@pytest.mark.parametrize("family", FAMILIES)
def test_fixture_is_comfyui_key_set(family, comfy, comfy_controlnet, fixtures_dir, unet_configs):
    model = comfy_controlnet(family, device="meta")
    keys = shapes(model.state_dict())
    path = fixtures_dir / f"control_{family}_keys.json"
    if WRITE:
        params = sum(v.numel() for v in model.state_dict().values())
        config = unet_configs[family]
        source = (
            f"{WHAT[family]}. Derived from ComfyUI {comfy.version} (commit {comfy_commit(comfy.path)}): "
            f"comfy.cldm.cldm.ControlNet(**{json.dumps(config)}, dtype=float32, "
            "operations=comfy.ops.disable_weight_init) instantiated on the meta device; state_dict() key -> "
            f"shape, {len(keys)} tensors, {params / 1e6:.2f} M parameters. Regenerated and checked by "
            "tests/comfy/test_key_fixtures.py."
        )
        fixtures_dir.mkdir(parents=True, exist_ok=True)
        write_fixture(path, source, keys)
    fixture = json.loads(path.read_text())
    assert set(fixture) == {"source", "keys"}
    assert "comfy.cldm.cldm.ControlNet" in fixture["source"]
    expected = fixture["keys"]
    assert sorted(set(keys) - set(expected)) == [], "ComfyUI has keys the fixture lacks"
    assert sorted(set(expected) - set(keys)) == [], "the fixture has keys ComfyUI lacks"
    assert keys == expected


@pytest.mark.parametrize("prefix", ["", "control_model."])
@pytest.mark.parametrize("family", FAMILIES)
def test_comfyui_detection_maps_the_keys_back_to_the_same_config(
    family, prefix, comfy, comfy_controlnet, comfy_model_classes
):
    """The config used for the fixture is the one ComfyUI's loader derives from such a file (a fixed point)."""
    sd = comfy_controlnet(family, device="meta").state_dict()
    model_config = comfy.model_detection.model_config_from_unet({prefix + k: v for k, v in sd.items()}, prefix, True)
    assert model_config is not None
    assert type(model_config).__name__ == comfy_model_classes[family]
    rebuilt = comfy_controlnet(dict(model_config.unet_config), device="meta").state_dict()
    assert shapes(rebuilt) == shapes(sd)


@pytest.mark.parametrize("layout", ["original", "prefixed", "diffusers"])
@pytest.mark.parametrize("family", FAMILIES)
def test_comfyui_loader_takes_every_layout_of_the_fixture_keys(
    family, layout, comfy, fixtures_dir, monkeypatch, caplog
):
    """ComfyUI's real loader entry point accepts the fixture keys (and our diffusers renaming of them) with
    nothing missing, unexpected or left over. Built on the meta device, so this is cheap even for SDXL."""
    expected = json.loads((fixtures_dir / f"control_{family}_keys.json").read_text())["keys"]
    sd = {k: torch.empty(v, device="meta") for k, v in expected.items()}
    if layout == "prefixed":
        sd = {"control_model." + k: v for k, v in sd.items()}
    elif layout == "diffusers":
        sd = original_to_diffusers(sd)
    monkeypatch.setattr(comfy.model_management, "unet_offload_device", lambda: torch.device("meta"))
    caplog.set_level(logging.DEBUG)
    control = comfy.controlnet.load_controlnet_state_dict(sd)
    assert type(control).__name__ == "ControlNet"
    model = control.control_model
    assert shapes(model.state_dict()) == expected
    complaints = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith(("missing controlnet keys", "unexpected controlnet keys", "leftover keys"))
    ]
    assert complaints == []
    del control, model
    gc.collect()
