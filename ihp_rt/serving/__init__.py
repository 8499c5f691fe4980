"""The interactive server: ``ihp-rt serve`` (FastAPI + uvicorn, the ``[serve]`` extra).

Nothing here is imported by ``import ihp_rt``; FastAPI is imported only by :mod:`.app` and the
modules it builds on. Sessions live in a store (:mod:`.store`, or Redis: :mod:`.redis_store`).
"""

from ihp_rt.serving.config import ServeConfig
from ihp_rt.serving.masks import decode_label_rle, encode_label_rle
from ihp_rt.serving.store import MemoryStore, SessionStore

__all__ = ["MemoryStore", "ServeConfig", "SessionStore", "decode_label_rle", "encode_label_rle"]
