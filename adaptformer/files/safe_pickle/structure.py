"""Limits on the loaded object's shape: no cycles, bounded nesting, bounded size as a tree."""
import types

from adaptformer.errors import CheckpointError, CheckpointReadError

MAX_NESTING = 64  # containers inside containers in the loaded object


# --- the loaded object -----------------------------------------------------------------------

def _children(obj):
    if isinstance(obj, (list, tuple)):
        return obj
    if isinstance(obj, dict):  # keys are plain str / int / bytes: leaves
        return [*obj.values(), *vars(obj).values()] if hasattr(obj, "__dict__") else obj.values()
    if isinstance(obj, types.SimpleNamespace):
        return vars(obj).values()
    return ()


def check_structure(obj, element_limit: int) -> None:
    """Refuse cycles, nesting deeper than MAX_NESTING, and shared children that expand beyond
    `element_limit` elements: whoever walks the result as a tree (repr, a recursive copy) stays cheap.
    Each container is visited once, so this check itself is linear in the file."""
    sizes, depths, on_path = {}, {}, set()
    todo = [(obj, False)]
    while todo:
        node, finished = todo.pop()
        children = _children(node)
        if not children and not isinstance(node, (list, tuple, dict, types.SimpleNamespace)):
            continue
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
            depths[key] = 1 + max((depths.get(id(c), 0) for c in children), default=0)
            if sizes[key] > element_limit:
                raise CheckpointReadError(f"holds more than {element_limit} elements once shared records are expanded")
            if depths[key] > MAX_NESTING:
                raise CheckpointReadError(f"nests containers more than {MAX_NESTING} deep")
        elif key in on_path:
            raise CheckpointReadError("holds a container that contains itself")
        elif key not in sizes:
            on_path.add(key)
            todo.append((node, True))
            todo.extend((c, False) for c in children)


def _element_limit(file_size: int) -> int:
    return file_size + 100_000


def _unpickle(unpickler, file_size):
    try:
        obj = unpickler.load()
    except CheckpointError:
        raise
    except KeyError as e:  # the dispatch table has no such opcode
        raise CheckpointReadError(f"corrupt pickle data (unknown opcode {e})") from None
    except Exception as e:  # a malformed pickle fails in many ways; all mean the same to the caller
        raise CheckpointReadError(f"corrupt pickle data ({type(e).__name__}: {e})") from e
    check_structure(obj, _element_limit(file_size))
    return obj
