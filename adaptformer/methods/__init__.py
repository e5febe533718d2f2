"""Tuning methods: one module each (registry.py lists how they are found and what each owns).

`apply_method(model, method_cfg)` (apply.py) inserts the chosen methods' modules and freezes
everything else; it imports Paddle, so it is loaded on first use and `adaptformer.methods`
itself stays importable by config validation without Paddle."""
from adaptformer.methods.registry import METHODS, MethodSpec, sections  # noqa: F401


def __getattr__(name):
    if name in ("apply_method", "MethodReport", "HEAD"):
        from adaptformer.methods import apply

        return getattr(apply, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
