"""Optional dependencies, imported at the point of use with a message naming the
package to install."""
from __future__ import annotations

from ..errors import InvalidInputError


def require(module: str, what: str):
    """Import `module` or say which package the vision feature `what` needs."""
    import importlib

    pip = {"open_clip": "open_clip_torch", "torchvision": "torchvision", "PIL": "pillow"}.get(module.split(".")[0], module)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InvalidInputError(f"{what} needs the {module!r} package (pip install {pip}); "
                                f"the vision path is disabled without it ({exc})") from exc
