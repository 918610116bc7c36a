"""Which encoder an index uses: resolving names / directories, recording one, finding it again.

An index records its encoder's id and where it came from, and keeps a copy in
``encoders/<id>/`` so queries can be embedded without naming the encoder again.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from typing import TYPE_CHECKING

from zoolens.errors import EncoderMismatchError, ZoolensError
from zoolens.errors import IndexError as IndexStoreError
from zoolens.index.catalog import Catalog

if TYPE_CHECKING:  # torch is imported only when an encoder is needed
    from zoolens.nn.base import Encoder

log = logging.getLogger(__name__)


def is_encoder(obj: object) -> bool:
    return hasattr(obj, "encode") and hasattr(obj, "id") and not isinstance(obj, str)


def resolve_encoder(spec: Encoder | str | os.PathLike[str]) -> Encoder:
    """An `Encoder` from itself, a name or a saved directory (via ``zoolens.nn.load_encoder``)."""
    if is_encoder(spec):
        return spec  # type: ignore[return-value]
    from zoolens.nn import load_encoder

    return load_encoder(os.fspath(spec))  # type: ignore[arg-type]


def encoder_source(spec: Encoder | str | os.PathLike[str]) -> str | None:
    """What to record so the encoder can be found again (absolute for directories)."""
    if is_encoder(spec):
        return None
    path = os.fspath(spec)  # type: ignore[arg-type]
    return os.path.abspath(path) if os.path.isdir(path) else path


def bind_encoder(catalog: Catalog, spec: Encoder | str | os.PathLike[str]) -> Encoder:
    """Record `spec` as the catalog's encoder, or check it is the recorded one.

    Raises:
        EncoderMismatchError: another encoder built the (non-empty) index.
    """
    enc = resolve_encoder(spec)
    with catalog.write(bump=False) as conn:
        recorded = catalog.meta().get("encoder_id")
        if recorded not in (None, enc.id):
            if catalog.count():
                raise EncoderMismatchError(
                    f"{catalog.dir}: this index holds embeddings of encoder {recorded}, not "
                    f"{enc.id}. Open it with encoder=None (no --encoder) to use its own, or "
                    "re-embed every model: ModelIndex.open(dir, encoder=None).reembed(new) / "
                    "`zoolens index reembed --index DIR --encoder NEW`"
                )
            log.info("%s: empty index switches encoder %s -> %s", catalog.dir, recorded, enc.id)
        if recorded != enc.id:
            catalog.set_meta(
                conn, encoder_id=enc.id, encoder_source=encoder_source(spec), dim=enc.dim or None
            )
    save_encoder_copy(catalog.dir, enc)
    return enc


def save_encoder_copy(directory: str, enc: Encoder) -> None:
    """Keep ``encoders/<id>/`` in the index directory (best effort)."""
    target = os.path.join(directory, "encoders", enc.id)
    if os.path.isdir(target):
        return
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        enc.save(tmp)
        os.replace(tmp, target)
    except (OSError, ZoolensError, TypeError, ValueError) as e:
        log.warning("could not keep a copy of encoder %s in %s: %s", enc.id, target, e)


def load_recorded_encoder(catalog: Catalog) -> Encoder:
    """The recorded encoder, from the index's copy or else from its recorded source."""
    meta = catalog.meta()
    recorded = meta.get("encoder_id")
    if recorded is None:
        raise IndexStoreError(
            f"{catalog.dir}: no encoder recorded yet; open the index with "
            "encoder=NAME_OR_DIR (--encoder)"
        )
    with contextlib.suppress(ImportError):
        importlib.import_module("zoolens.nn")  # registers the built-in encoder classes
    copy = os.path.join(catalog.dir, "encoders", recorded)
    tried = []
    for where in (copy if os.path.isdir(copy) else None, meta.get("encoder_source")):
        if not where:
            continue
        try:
            enc = resolve_encoder(where)
        except ZoolensError as e:
            tried.append(str(e))
            continue
        if enc.id == recorded:
            return enc
        tried.append(f"{where} is now {enc.id}")
    raise EncoderMismatchError(
        f"{catalog.dir}: cannot load this index's encoder {recorded} ({'; '.join(tried)}); "
        "open it with that encoder, or re-embed with another: `zoolens index reembed`"
    )
