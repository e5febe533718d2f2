"""Full fine-tuning: every tensor trains (apply.py handles it: there is nothing to attach)."""
from adaptformer.methods.registry import MethodSpec

SPEC = MethodSpec("full", exclusive=True, order=0)
