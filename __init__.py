"""Affordance: ControlNet for ComfyUI.

This file stays import-light: ComfyUI reads ``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS`` and
``WEB_DIRECTORY`` from it, and the node layer (which imports ComfyUI) is loaded only when those
mappings are first asked for.
"""

WEB_DIRECTORY = "./web/js"

_LAZY = ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS")


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from . import nodes

        return getattr(nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
