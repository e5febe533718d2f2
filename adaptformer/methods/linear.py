"""Linear probe: only the head trains."""
from adaptformer.methods.registry import MethodSpec


def attach(model, cfg):
    return []


SPEC = MethodSpec("linear", exclusive=True, attach=attach, order=1)
