"""Optional dependencies: import one where a feature needs it, or fail with one line naming the
feature, the package and the extra that brings it."""

from __future__ import annotations

import importlib
from types import ModuleType

from zoolens.errors import MissingDependencyError


def optional_import(
    module: str, feature: str, extra: str, package: str | None = None
) -> ModuleType:
    """Import `module` for `feature`, or raise `MissingDependencyError`.

    Args:
        module: the module to import, e.g. ``"mnist1d.data"``.
        feature: what needs it, as the message names it, e.g. ``"task 'mnist1d'"``.
        extra: the zoolens extra that installs it, e.g. ``"zoo"``.
        package: the distribution's name when it differs from the module's top level
            (``umap-learn`` for ``umap``).

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        name = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{feature} needs the optional package {name!r}: pip install 'zoolens[{extra}]'"
        ) from None
