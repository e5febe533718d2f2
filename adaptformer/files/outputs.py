"""Before a tool writes anything: its outputs must not be its inputs (after links are resolved)
nor the files of a run or tuned folder, and must be file paths, not folders."""
from __future__ import annotations

import os
from typing import Dict, Iterable

from adaptformer.errors import OutputError
from adaptformer.files.run_folder import LOCK, MANIFEST, RUN_FILES, holds_run

TUNED_FILES = ("tuned.pdparams", "tuned.json")  # adaptformer/serve/tuned.py
_RUN_MARKERS = ("config.yaml", "summary.json", "last.pdckpt")  # a run folder written before the manifest existed


def _protected_in(folder: str) -> Dict[str, str]:
    """{file name: what holds it} of the files in `folder` no tool may replace."""
    protected = {}
    if os.path.isfile(os.path.join(folder, TUNED_FILES[1])):
        protected.update({n: "the tuned folder" for n in TUNED_FILES})
    if holds_run(folder) or any(os.path.isfile(os.path.join(folder, n)) for n in _RUN_MARKERS):
        protected.update({n: "the run" for n in (*RUN_FILES, MANIFEST, LOCK)})
    return protected


def check_outputs(outputs: Dict[str, str], inputs: Iterable[str]) -> None:
    """OutputError, before any work, if an output (label -> path) is a folder, is one of `inputs`
    (the same file, links resolved), or would replace a file of a run or tuned folder."""
    inputs = [i for i in inputs if i]
    real_inputs = {os.path.realpath(i): i for i in inputs}
    for label, path in outputs.items():
        if not path:
            continue
        if "\0" in path:
            raise OutputError(f"{label} {path!r}: a path cannot hold a NUL byte")
        real = os.path.realpath(path)
        if path.endswith(os.sep) or os.path.isdir(real):
            raise OutputError(f"{label} {path}: is a folder; expected the path of a file to write")
        if real in real_inputs:
            raise OutputError(f"{label} {path}: is the input {real_inputs[real]}; writing it would destroy it, "
                              "choose another path")
        folder, name = os.path.split(real)
        holder = _protected_in(folder).get(name)
        if holder is not None:
            raise OutputError(f"{label} {path}: would replace {name} of {holder} in {folder}; choose another path")


__all__ = ["check_outputs", "TUNED_FILES"]
