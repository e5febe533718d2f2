"""BitFit (Ben Zaken et al., ACL 2022): every bias trains, BatchNorm's included."""
from adaptformer.methods.registry import MethodSpec


def attach(model, cfg):
    return ["bias"]


SPEC = MethodSpec("bitfit", attach=attach, order=6)
