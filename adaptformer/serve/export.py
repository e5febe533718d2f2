"""Deployable copies of a trained model.

`export(trained, prefix)` merges LoRA into the weights (models/lora.py), saves the model with
paddle.jit.save for Paddle Inference and writes PREFIX.meta.json beside it: class names, how an
image becomes the input (resize, crop, mean, std) and the input shape. Paddle 3.x saves a PIR
program, PREFIX.json, and PREFIX.pdiparams; earlier versions (or FLAGS_enable_pir_api=0) write
PREFIX.pdmodel instead of the .json, and `find_program` takes either.

`convert_onnx(prefix, out)` runs paddle2onnx (optional: pip install -e ".[onnx]") in a child
process: on an operator it cannot convert, paddle2onnx 2.x aborts the whole process (SIGABRT)
without naming the operator, so the child's failure is turned into one line here, naming the
program's operators that are missing from paddle2onnx's supported list.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from adaptformer.data.transforms import eval_resize
from adaptformer.errors import ExportError, one_line
from adaptformer.files import read_json
from adaptformer.files.run_folder import pid_alive
from adaptformer.models.lora import merge_lora
from adaptformer.serve.trained import TrainedModel
from adaptformer.errors import OutputError
from adaptformer.files.atomic import atomic_write, atomic_write_text, describe_os_error

META_SUFFIX = ".meta.json"
PROGRAM_SUFFIXES = (".json", ".pdmodel")  # PIR program (Paddle >= 3.0), legacy ProgramDesc
PARAMS_SUFFIX = ".pdiparams"
INPUT_NAME = "x"
ONNX_OPSET = 17  # LayerNormalization is one ONNX op from opset 17 on
ONNX_INSTALL = 'pip install -e ".[onnx]" (paddle2onnx and onnxruntime)'


def preprocess_settings(data_cfg) -> Dict:
    """How an image (or a video file, for a video model) becomes the model's input, as prediction does
    it (adaptformer/serve/predict.py)."""
    if data_cfg.dataset == "video":
        from adaptformer.data.kinds.video import preprocess_description

        return preprocess_description(data_cfg)
    resize = eval_resize(data_cfg, any_size=True)
    return {"color": "RGB (EXIF orientation applied, alpha dropped, 16-bit scaled to 8)", **resize,
            "scale": "pixel / 255", "mean": list(data_cfg.mean), "std": list(data_cfg.std), "layout": "NCHW",
            "dtype": "float32"}


STAGING_SUFFIX = ".export"


def export_outputs(prefix: str, onnx: bool = False) -> Dict[str, str]:
    """{label: path} of every file an export to `prefix` may write; OutputError for a prefix that
    names a folder (a trailing "/", or an existing folder) rather than the start of file names."""
    if not prefix or prefix.endswith(("/", os.sep)) or os.path.isdir(prefix) or not os.path.basename(prefix):
        raise OutputError(f"-o {prefix}: is a folder; -o takes a path prefix such as {os.path.join(prefix or '.', 'model')} "
                          "(writes model.json, model.pdiparams, ...)")
    suffixes = [*PROGRAM_SUFFIXES, PARAMS_SUFFIX, META_SUFFIX] + ([".onnx"] if onnx else [])
    return {f"-o {prefix} ({s})": prefix + s for s in suffixes}


def _remove_abandoned_staging(folder: str, base: str) -> None:
    """Staging folders of exports to the same prefix whose process is gone (killed with -9)."""
    for name in os.listdir(folder):
        parts = name.rsplit(".", 3)  # ".<base>.<pid>.<random>.export" -> ["." + base, pid, random, "export"]
        if (len(parts) == 4 and parts[0] == "." + base and parts[3] == STAGING_SUFFIX[1:] and parts[1].isdigit()
                and not pid_alive(int(parts[1]))):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def save_inference(model, prefix: str, input_shape: List[Optional[int]]) -> Tuple[str, str]:
    """paddle.jit.save of `model` (eval mode) with input `x` of `input_shape` (None: any size), the
    files moved onto PREFIX.* only once all are written; returns (program, params) paths. A
    staging folder a killed export left for this prefix is removed first."""
    import paddle

    export_outputs(prefix)
    folder = os.path.dirname(os.path.abspath(prefix))
    base = os.path.basename(prefix)
    try:
        os.makedirs(folder, exist_ok=True)
        _remove_abandoned_staging(folder, base)
        staging = tempfile.mkdtemp(prefix=f".{base}.{os.getpid()}.", suffix=STAGING_SUFFIX, dir=folder)
    except OSError as e:
        raise OutputError(describe_os_error(folder, e)) from None
    try:
        model.eval()
        spec = paddle.static.InputSpec(list(input_shape), "float32", INPUT_NAME)  # InputSpec edits the list
        try:
            paddle.jit.save(model, os.path.join(staging, "model"), input_spec=[spec])
        except Exception as e:
            last = one_line((str(e).strip().splitlines() or [""])[-1])[:300]  # after Paddle's transformed-code trace
            reason = last if last.startswith(type(e).__name__) else f"{type(e).__name__}: {last}"
            raise ExportError(f"paddle.jit.save failed: {reason}") from None
        for name in os.listdir(staging):
            suffix = name[len("model"):]
            os.replace(os.path.join(staging, name), os.path.abspath(prefix) + suffix)
    except OSError as e:
        raise OutputError(describe_os_error(prefix, e)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return find_program(prefix)


def export(trained: TrainedModel, prefix: str, batch_size: Optional[int] = None) -> Dict:
    """Paddle Inference files for `trained` (LoRA merged into its weights, in place) and
    PREFIX.meta.json; `batch_size` None lets the batch dimension vary. Returns the meta."""
    import paddle

    merged = merge_lora(trained.model)
    shape = trained.model.input_shape(trained.data.img_size, batch_size)
    program, params = save_inference(trained.model, prefix, shape)
    meta = {
        "format": "paddle_inference",
        "program": os.path.basename(program),
        "params": os.path.basename(params),
        "input": {"name": INPUT_NAME, "shape": shape, "dtype": "float32"},
        "output": {"shape": [batch_size, len(trained.class_names)], "meaning": "logits; softmax gives probabilities"},
        "class_names": trained.class_names,
        "preprocess": preprocess_settings(trained.data),
        "model": trained.model_config,
        "method": trained.method,
        "lora_layers_merged": merged,
        "source": trained.source,
        "paddle_version": paddle.__version__,
    }
    atomic_write_text(prefix + META_SUFFIX, json.dumps(meta, indent=2))
    return meta


def find_program(prefix: str) -> Tuple[str, str]:
    """(program, params) files of an exported model: PREFIX.json (PIR) or PREFIX.pdmodel, and PREFIX.pdiparams."""
    for suffix in PROGRAM_SUFFIXES:
        if os.path.isfile(prefix + suffix):
            params = prefix + PARAMS_SUFFIX
            if not os.path.isfile(params):
                raise ExportError(f"{prefix + suffix}: no {params} beside it")
            return prefix + suffix, params
    raise ExportError(f"no exported model at {prefix} (looked for {prefix}.json and {prefix}.pdmodel)")


def read_meta(prefix: str) -> Dict:
    return read_json(prefix + META_SUFFIX, "json", "an export's meta.json")


class InferenceModel:
    """An exported model run by Paddle Inference: model(x [N, 3, H, W] float32) -> logits, on the
    CPU or (device "gpu:N", a CUDA build of Paddle) on GPU N."""

    def __init__(self, prefix: str, threads: Optional[int] = None, device: str = "cpu"):
        from paddle import inference

        kind, _, index = device.partition(":")
        if kind not in ("cpu", "gpu") or (kind == "cpu" and index) or not (index or "0").isdigit():
            raise ExportError(f"Paddle Inference device must be cpu, gpu or gpu:N, got {device!r}")
        program, params = find_program(prefix)
        config = inference.Config(program, params)
        if kind == "gpu":
            config.enable_use_gpu(256, int(index or 0))  # initial memory pool (MB), device id
        else:
            config.disable_gpu()
        config.disable_glog_info()
        if threads:
            config.set_cpu_math_library_num_threads(threads)
        self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(x)
        self.predictor.run()
        return self.output.copy_to_cpu()


# --------------------------------------------------------------------------- ONNX

_ONNX_CHILD = """
import os, sys
import paddle2onnx
program, params, out, opset = sys.argv[1:5]
# onnxoptimizer, not the default polygraphy, which pip-installs onnx_graphsurgeon at run time.
paddle2onnx.export(program, params, out, opset_version=int(opset), optimize_tool="onnxoptimizer")
if not os.path.isfile(out) or os.path.getsize(out) == 0:
    sys.exit("paddle2onnx wrote no model")
"""

# PIR operator names whose paddle2onnx converter goes by the operator's pre-PIR name.
_LEGACY_NAMES = {
    "add": "elementwise_add", "subtract": "elementwise_sub", "multiply": "elementwise_mul",
    "divide": "elementwise_div", "maximum": "elementwise_max", "minimum": "elementwise_min",
    "remainder": "elementwise_mod", "floor_divide": "elementwise_floordiv", "matmul": "matmul_v2",
    "expand": "expand_v2", "flatten": "flatten_contiguous_range", "unsqueeze": "unsqueeze2", "topk": "top_k_v2",
    "argmax": "arg_max", "argmin": "arg_min", "sum": "reduce_sum", "mean": "reduce_mean", "max": "reduce_max",
    "min": "reduce_min", "prod": "reduce_prod", "all": "reduce_all", "any": "reduce_any",
    "hardswish": "hard_swish", "hardsigmoid": "hard_sigmoid", "nonzero": "where_index",
}
_STRUCTURAL = {"pd_op.data", "pd_op.feed", "pd_op.fetch", "builtin.parameter", "builtin.shadow_output",
               "builtin.constant"}


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("paddle2onnx", "onnxruntime"))


def program_operators(prefix: str) -> List[str]:
    """The distinct operator names of an exported program (pd_op.matmul, ...)."""
    import paddle

    program = paddle.jit.load(prefix).program()
    return sorted({op.name() for op in program.global_block().ops})


def unsupported_operators(operators: List[str], supported) -> List[str]:
    """The operators with no converter in paddle2onnx's `supported` list, under either name."""
    missing = []
    for name in operators:
        if name in _STRUCTURAL:
            continue
        base = name.split(".", 1)[-1]
        candidates = {base, base.rstrip("_"), _LEGACY_NAMES.get(base.rstrip("_")), name.replace(".", "_")}
        if not candidates & set(supported):
            missing.append(name)
    return missing


def _failure(prefix: str, output: str) -> str:
    import paddle2onnx
    from paddle2onnx.utils import get_all_supported_operators_pir

    tool = f"paddle2onnx {paddle2onnx.__version__}"
    if "unsupported operators" in output:
        operators = program_operators(prefix)
        missing = unsupported_operators(operators, get_all_supported_operators_pir())
        if missing:
            return f"{tool} cannot convert operator(s) {', '.join(missing)} (not in its supported list)"
        return f"{tool} aborted on an unsupported operator without naming it; the program's operators: " \
               f"{', '.join(operators)}"
    lines = [one_line(line) for line in output.splitlines() if "error" in line.lower()] or \
        [one_line(line) for line in output.splitlines() if line.strip()] or ["no output"]
    return f"{tool} failed: {lines[-1][:300]}"


def convert_onnx(prefix: str, out: str, opset: int = ONNX_OPSET) -> str:
    """Convert the exported model at `prefix` to ONNX file `out` (written atomically)."""
    if not onnx_available():
        raise ExportError(f"ONNX export needs the optional packages: {ONNX_INSTALL}")
    program, params = find_program(prefix)

    def write(tmp: str) -> None:
        run = subprocess.run([sys.executable, "-c", _ONNX_CHILD, program, params, tmp, str(opset)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise ExportError(_failure(prefix, run.stdout + "\n" + run.stderr))

    atomic_write(out, write)
    return out


def onnx_session(path: str, threads: Optional[int] = None) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime CPU session as a function: x [N, 3, H, W] float32 -> logits."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: not its notes on initializers paddle2onnx left unused
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
