"""ComfyUI loads the pack the way it loads any custom node folder, and its nodes work with ComfyUI's own.

``nodes.load_custom_node(<repository root>)`` imports the repository root as a package named after its path
(not as ``affordance``) and registers ``NODE_CLASS_MAPPINGS``, skipping names in ``ignore`` (the built-in node
names, silently). ComfyUI's global registries are swapped for copies during each test.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfy

CONTROL_IDS = {"AST_ControlNetLoader", "AST_ApplyControlNet", "AST_ControlWeights", "AST_StrengthSchedule"}
TOL = 1e-3


@pytest.fixture
def registries(comfy_nodes, monkeypatch):
    """Fresh copies of ComfyUI's node registries, restored after the test."""
    for name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "LOADED_MODULE_DIRS", "EXTENSION_WEB_DIRS"):
        monkeypatch.setattr(comfy_nodes, name, dict(getattr(comfy_nodes, name)))
    return comfy_nodes


@pytest.fixture(scope="session")
def builtin_node_names(comfy_nodes) -> set[str]:
    """Names of ComfyUI's core nodes and of the comfy_extras nodes that import here (as the server loads them)."""
    saved = {name: dict(getattr(comfy_nodes, name)) for name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS")}
    try:
        asyncio.run(comfy_nodes.init_builtin_extra_nodes())  # extras needing absent packages only log a warning
        names = set(comfy_nodes.NODE_CLASS_MAPPINGS)
    finally:
        for name, value in saved.items():
            setattr(comfy_nodes, name, value)
    assert {"ControlNetLoader", "ControlNetApplyAdvanced", "KSampler"} <= names
    assert "SetUnionControlNetType" in names, "comfy_extras/nodes_controlnet.py did not load"
    return names


@pytest.fixture
def loaded_pack(registries, builtin_node_names, repo_root):
    """``(module, registered)``: the pack loaded by ``nodes.load_custom_node`` as ComfyUI's startup does."""
    nodes = registries
    before = set(nodes.NODE_CLASS_MAPPINGS)
    assert asyncio.run(nodes.load_custom_node(str(repo_root), ignore=builtin_node_names, module_parent="custom_nodes"))
    module_name = str(repo_root).replace(".", "_x_")
    try:
        module = sys.modules[module_name]
        registered = {k: v for k, v in nodes.NODE_CLASS_MAPPINGS.items() if k not in before}
        yield module, registered
    finally:
        for name in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
            del sys.modules[name]


def test_pack_registers_its_nodes(loaded_pack, registries, repo_root):
    nodes = registries
    module, registered = loaded_pack
    assert set(registered) == set(module.NODE_CLASS_MAPPINGS)  # every node of the pack, nothing else
    assert CONTROL_IDS <= set(registered)
    assert all(name.startswith("AST_") for name in registered)
    assert Path(module.__file__).resolve() == repo_root / "__init__.py"
    for name, cls in registered.items():
        # the classes come from the copy ComfyUI imported, with ComfyUI's bookkeeping on them
        assert cls.__module__.startswith(module.__name__ + ".nodes"), (name, cls.__module__)
        assert cls.RELATIVE_PYTHON_MODULE == f"custom_nodes.{repo_root.name}"
        assert nodes.NODE_DISPLAY_NAME_MAPPINGS[name] == module.NODE_DISPLAY_NAME_MAPPINGS[name]
        # the V1 schema ComfyUI's server and executor read
        spec = cls.INPUT_TYPES()
        assert isinstance(spec, dict) and isinstance(spec.get("required"), dict)
        assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
        assert callable(getattr(cls(), cls.FUNCTION))
        assert isinstance(cls.CATEGORY, str) and cls.CATEGORY
    assert nodes.LOADED_MODULE_DIRS[repo_root.name] == str(repo_root)
    web = repo_root / "web" / "js"
    if web.is_dir():
        assert Path(nodes.EXTENSION_WEB_DIRS[repo_root.name]) == web


def test_no_id_collides_with_a_builtin_node(builtin_node_names, comfy):
    from affordance.nodes import NODE_CLASS_MAPPINGS

    our_ids = set(NODE_CLASS_MAPPINGS)
    assert CONTROL_IDS <= our_ids and all(i.startswith("AST_") for i in our_ids)
    assert not our_ids & builtin_node_names
    # extras that cannot import here (missing optional packages) and API nodes: look for our ids in the sources
    sources = [comfy.path / "nodes.py", *(comfy.path / "comfy_extras").glob("*.py")]
    sources += (comfy.path / "comfy_api_nodes").rglob("*.py")
    for path in sources:
        text = path.read_text(errors="replace")
        assert not [i for i in our_ids if f'"{i}"' in text or f"'{i}'" in text], path


def test_a_colliding_name_would_be_dropped(registries, builtin_node_names, tmp_path):
    """Why the prefix matters: ComfyUI silently keeps its own node when a pack reuses a built-in name."""
    nodes = registries
    pack = tmp_path / "collider"
    pack.mkdir()
    (pack / "__init__.py").write_text(
        "class ControlNetLoader:\n    pass\n\nclass Unique:\n    pass\n\n"
        "NODE_CLASS_MAPPINGS = {'ControlNetLoader': ControlNetLoader, 'AST_Unique_Probe': Unique}\n"
    )
    core = nodes.NODE_CLASS_MAPPINGS["ControlNetLoader"]
    try:
        assert asyncio.run(nodes.load_custom_node(str(pack), ignore=builtin_node_names))
    finally:
        sys.modules.pop(str(pack).replace(".", "_x_"), None)
    assert nodes.NODE_CLASS_MAPPINGS["ControlNetLoader"] is core
    assert "AST_Unique_Probe" in nodes.NODE_CLASS_MAPPINGS


def test_our_loader_output_works_with_comfyui_apply_node(
    loaded_pack, registries, tiny_family, comfy_sample, record_sampling, monkeypatch
):
    """AST_ControlNetLoader -> ComfyUI's ControlNetApplyAdvanced -> KSampler equals ComfyUI's loader and Apply node.

    ComfyUI's Apply node calls ``copy()`` and ``set_cond_hint`` on our object and chains nothing; the sampler then
    drives the object through the duck-typed control contract.
    """
    import folder_paths

    nodes = registries
    _, registered = loaded_pack
    fam = tiny_family("sd15")
    folder = fam.controlnet_files[0].parent
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "controlnet", ([str(folder)], {".safetensors"}))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    name = fam.controlnet_files[0].name

    loader = registered["AST_ControlNetLoader"]
    assert name in loader.INPUT_TYPES()["required"]["control_net_name"][0]
    (ours,) = getattr(loader(), loader.FUNCTION)(name)
    assert type(ours).__name__ == "AffordanceControl"
    (theirs,) = nodes.ControlNetLoader().load_controlnet(name)

    prompts = fam.conditioning(1), fam.conditioning(2)
    image = fam.image(11)
    apply = nodes.ControlNetApplyAdvanced()
    with_ours = apply.apply_controlnet(*prompts, ours, image, 0.8, 0.0, 1.0)
    assert with_ours[0][0][1]["control"] is with_ours[1][0][1]["control"] is not ours  # a shared copy
    with_theirs = apply.apply_controlnet(*prompts, theirs, image, 0.8, 0.0, 1.0)

    mine = comfy_sample(fam.patcher, *with_ours, fam.latent(), steps=4)
    ref = comfy_sample(fam.patcher, *with_theirs, fam.latent(), steps=4)
    effect = (ref.double() - comfy_sample(fam.patcher, *prompts, fam.latent(), steps=4).double()).abs().max().item()
    diff = record_sampling("registered AST loader + ComfyUI Apply vs ComfyUI loader + Apply", mine, ref, effect)
    assert effect > 50 * TOL
    assert diff <= TOL

    # and our registered Apply node on the registered loader's output samples the same; its marks let the cond and
    # uncond rows share the layers that read no text (computed once: equal up to rounding, not bit for bit)
    applier = registered["AST_ApplyControlNet"]
    with_our_apply = getattr(applier(), applier.FUNCTION)(*prompts, ours, image, 0.8, 0.0, 1.0)
    again = comfy_sample(fam.patcher, *with_our_apply, fam.latent(), steps=4)
    assert record_sampling("registered AST loader + AST Apply vs + ComfyUI Apply", again, mine, effect) <= TOL


def test_pooling_on_samples_like_comfyuis_loader_on_a_shuffle_name(
    loaded_pack, registries, tiny_family, comfy_sample, record_sampling, monkeypatch, tmp_path
):
    """The 1.1 shuffle model: ComfyUI's loader turns global average pooling on for a *_shuffle file name; ours
    takes it as the loader's choice. With 'on' both sample the same; 'from file' (nothing in the file says so)
    is the unpooled ControlNet, which samples differently."""
    import shutil

    import folder_paths

    nodes = registries
    _, registered = loaded_pack
    fam = tiny_family("sd15")
    name = "tiny_shuffle.safetensors"
    shutil.copy(fam.controlnet_files[0], tmp_path / name)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "controlnet", ([str(tmp_path)], {".safetensors"}))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})

    loader = registered["AST_ControlNetLoader"]
    (pooled,) = getattr(loader(), loader.FUNCTION)(name, global_average_pooling="on")
    (plain,) = getattr(loader(), loader.FUNCTION)(name)
    (theirs,) = nodes.ControlNetLoader().load_controlnet(name)
    assert theirs.global_average_pooling

    prompts = fam.conditioning(1), fam.conditioning(2)
    image = fam.image(12)
    apply = nodes.ControlNetApplyAdvanced()
    mine = comfy_sample(fam.patcher, *apply.apply_controlnet(*prompts, pooled, image, 0.8, 0.0, 1.0), fam.latent(), steps=4)
    ref = comfy_sample(fam.patcher, *apply.apply_controlnet(*prompts, theirs, image, 0.8, 0.0, 1.0), fam.latent(), steps=4)
    unpooled = comfy_sample(fam.patcher, *apply.apply_controlnet(*prompts, plain, image, 0.8, 0.0, 1.0), fam.latent(), steps=4)
    effect = (ref.double() - unpooled.double()).abs().max().item()
    diff = record_sampling("AST loader, pooling on vs ComfyUI loader on a *_shuffle name", mine, ref, effect)
    assert effect > 50 * TOL
    assert diff <= TOL
