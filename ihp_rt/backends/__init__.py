"""Inference engines behind one interface; each imports its own library lazily."""

from ihp_rt.backends.base import Backend

__all__ = ["Backend"]
