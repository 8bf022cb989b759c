"""Where trials run: one interface, a Ray implementation and an in-process one."""
from __future__ import annotations

from search.backends.base import Backend, BackendError

__all__ = ["Backend", "BackendError", "make_backend"]


def make_backend(name: str, **kwargs) -> Backend:
    if name == "ray":
        from search.backends.ray_backend import RayBackend

        return RayBackend(**kwargs)
    if name == "simulated":
        from search.backends.simulated import SimulatedBackend

        return SimulatedBackend()
    if name == "inprocess":
        from search.backends.inprocess import InProcessBackend

        return InProcessBackend(**{k: v for k, v in kwargs.items() if k != "address"})
    raise ValueError(f"unknown backend {name!r}; use ray, inprocess or simulated")
