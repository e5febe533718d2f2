"""Linear probe: only the head trains."""
from .registry import MethodSpec


def attach(model, cfg):
    return []


SPEC = MethodSpec("linear", exclusive=True, attach=attach, order=1)
