"""BitFit (Ben Zaken et al., ACL 2022): every bias trains, BatchNorm's included, and the separate q and
v biases of VideoMAE's attention (q_bias, v_bias)."""
from adaptformer.methods.registry import MethodSpec


def attach(model, cfg):
    separate = any(name.endswith((".q_bias", ".v_bias")) for name, _ in model.named_parameters())
    return ["bias"] + ([r"[qv]_bias"] if separate else [])


SPEC = MethodSpec("bitfit", attach=attach, order=6)
