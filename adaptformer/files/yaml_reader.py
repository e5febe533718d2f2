"""YAML as configs use it: safe tags only, and bounded before anything is built from it.

yaml.safe_load runs no code but trusts the shape: 955 bytes of nested anchors and aliases
expand to billions of nodes once walked, deep nesting overflows the recursion limit, and a key
given twice in one mapping silently drops the first. Here the composed document is measured
after alias expansion (MAX_NODES) and depth (MAX_DEPTH) before construction, and duplicate keys
are refused.
"""
from __future__ import annotations

from typing import Any

import yaml

from adaptformer.errors import ConfigError
from adaptformer.files.opener import read_text

MAX_NODES = 100_000  # after alias expansion; our configs have a few hundred
MAX_DEPTH = 64


class _Refused(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: SafeConstructor refuses it with its own message
                if duplicate:
                    raise _Refused(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in one mapping "
                                   "(the first would be silently dropped)")
        return super().construct_mapping(node, deep)


def _expanded_size(node, memo) -> int:
    """Nodes in the document once every alias is expanded (memoised: aliases share node objects)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once, and SafeConstructor refuses nothing here
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        total = 1
    memo[key] = total
    return total


def parse_yaml(text: str, where: str) -> Any:
    """`text` as YAML; ConfigError naming `where` for invalid YAML, or a document too large or deep."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise _Refused(f"expands to {size:,} nodes once its aliases are followed (the limit is {MAX_NODES:,})")
        return loader.construct_document(node)
    except _Refused as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: str) -> Any:
    """A YAML file a user hands us, through the opener (regular file, size budget, UTF-8)."""
    return parse_yaml(read_text(path, "config", "a YAML config"), path)


__all__ = ["MAX_NODES", "MAX_DEPTH", "parse_yaml", "read_yaml"]
