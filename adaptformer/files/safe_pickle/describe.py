"""How values from a file appear in the readers' messages."""


def describe(obj) -> str:
    """A short, safe description of a value from the file (never its repr: that can take exponential time)."""
    if isinstance(obj, (str, bytes)):
        return repr(obj[:40]) + ("..." if len(obj) > 40 else "")
    if isinstance(obj, (bool, int, float, type(None))):
        return repr(obj) if not isinstance(obj, int) or obj.bit_length() < 64 else "a huge int"
    return f"a {type(obj).__name__}"
