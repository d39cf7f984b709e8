"""How the learned preprocessors find, load and keep their annotator files in ComfyUI (nodes/annotators.py), with
the test host's folder_paths behaving as ComfyUI's (a default folder first, unknown names a KeyError)."""

from __future__ import annotations

import sys

import pytest
import torch

from affordance.nodes import annotators
from affordance.preprocessors.hed import HED_FILE, HEDNet
from affordance.preprocessors.midas import MIDAS_FILE
from affordance.preprocessors.weights import AnnotatorWeightsError


@pytest.fixture
def folder(stub_comfy):
    annotators.clear_cache()
    yield stub_comfy / "models" / "annotators"
    annotators.clear_cache()


class Owner:
    """Stands for a node object (ComfyUI keeps those while a graph uses them)."""


def test_the_first_use_registers_models_annotators_once(folder):
    fp = sys.modules["folder_paths"]
    assert "annotators" not in fp.folder_names_and_paths
    assert annotators.annotator_folders() == [str(folder)]
    assert annotators.annotator_folders() == [str(folder)]  # nothing added twice


def test_a_folder_from_extra_model_paths_is_kept_and_models_annotators_added_after_it(folder):
    fp = sys.modules["folder_paths"]
    fp.add_model_folder_path("annotators", "/elsewhere/annotators")  # extra_model_paths.yaml, read at start
    assert annotators.annotator_folders() == ["/elsewhere/annotators", str(folder)]


def test_files_in_sub_folders_are_found_least_nested_first_and_a_file_in_the_folder_wins(folder):
    for sub in ("ckpts/lllyasviel/Annotators", "ckpts/A", "b"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / HED_FILE).write_bytes(b"x")
    (folder / "ckpts" / "A" / "other.pth").write_bytes(b"x")
    assert annotators.annotator_path(HED_FILE) == str(folder / "b" / HED_FILE)  # depth 2, before depth 3 and 4
    (folder / "b" / HED_FILE).unlink()
    assert annotators.annotator_path(HED_FILE) == str(folder / "ckpts" / "A" / HED_FILE)  # then by path
    (folder / HED_FILE).write_bytes(b"x")
    assert annotators.annotator_path(HED_FILE) == str(folder / HED_FILE)


def test_loading_one_file_keeps_the_others_cached_and_a_changed_file_replaces_only_its_own(folder, monkeypatch):
    folder.mkdir(parents=True)
    torch.save(HEDNet().state_dict(), folder / HED_FILE)
    torch.save(HEDNet().state_dict(), folder / "copy.pth")
    owner = Owner()
    first = annotators.annotator_model(HED_FILE, HEDNet, owner)
    other = annotators.annotator_model("copy.pth", HEDNet, owner)
    assert annotators.annotator_model(HED_FILE, HEDNet, owner) is first  # not read again
    assert len(annotators._CACHE) == 2
    torch.save(HEDNet().state_dict(), folder / HED_FILE)  # replaced on disk
    replaced = annotators.annotator_model(HED_FILE, HEDNet, owner)
    assert replaced is not first and annotators.annotator_model("copy.pth", HEDNet, owner) is other
    assert len(annotators._CACHE) == 2  # the old version of the replaced file is dropped
    assert sum(key[0] == str(folder / HED_FILE) for key in annotators._CACHE) == 1


def test_clear_cache_forgets_loaded_networks(folder):
    folder.mkdir(parents=True)
    torch.save(HEDNet().state_dict(), folder / HED_FILE)
    holder = Owner()  # still holds the network: only clear_cache can make the cache forget it
    first = annotators.annotator_model(HED_FILE, HEDNet, holder)
    assert len(annotators._CACHE) == 1
    annotators.clear_cache()
    assert len(annotators._CACHE) == 0
    assert annotators.annotator_model(HED_FILE, HEDNet, Owner()) is not first


def test_networks_go_to_half_precision_where_comfyui_says_so_and_are_loaded_through_it(folder, monkeypatch):
    mm = sys.modules["comfy.model_management"]
    loaded = []
    monkeypatch.setattr(mm, "should_use_fp16", lambda device=None: True)
    monkeypatch.setattr(mm, "load_models_gpu", lambda models, **kw: loaded.append(list(models)))
    folder.mkdir(parents=True)
    torch.save(HEDNet().state_dict(), folder / HED_FILE)
    owner = Owner()
    net = annotators.annotator_model(HED_FILE, HEDNet, owner)
    assert all(p.dtype == torch.float16 for p in net.parameters())
    patcher = owner.__dict__["_ast_annotators"][HED_FILE]
    assert loaded == [[patcher]] and patcher.model is net
    annotators.annotator_model(HED_FILE, HEDNet, owner)
    assert loaded == [[patcher], [patcher]]  # every use asks ComfyUI to have it on the device


def test_a_missing_file_names_every_folder(folder):
    fp = sys.modules["folder_paths"]
    fp.add_model_folder_path("annotators", "/elsewhere/annotators")
    with pytest.raises(AnnotatorWeightsError, match=r"/elsewhere/annotators \(and its sub-folders\).*models/annotators"):
        annotators.annotator_path(MIDAS_FILE)
