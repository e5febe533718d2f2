"""The table of bad inputs: each is run as a user would run it (the CLI in a subprocess) and
must end with one line on stderr, `error: ...`, exit status 2, and no output written.

Used by tests/test_bad_inputs.py and by tools/reliability_report.py, which writes the table
to docs/reliability_inputs.md.
"""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "configs", "cpu", "smoke_synthetic.yaml")
TIMEOUT_S = 120


@dataclass
class Case:
    name: str  # the input, as a user would describe it
    args: List[str]  # after `python tools/<tool>`; {tmp}, {out} and {base} are filled in
    expect: str  # a distinctive part of the one error line
    tool: str = "train.py"
    setup: Optional[Callable[[Path], None]] = None  # prepares files under tmp
    # Errors found while training (not in the inputs) may leave what the run wrote before.
    runtime: bool = False
    file_size_limit: Optional[int] = None  # RLIMIT_FSIZE in bytes: writes past it fail with EFBIG
    expect_status: int = 2


@dataclass
class Outcome:
    case: Case
    status: Optional[int]  # None: killed after TIMEOUT_S (a hang)
    stdout: str
    stderr: str
    out_before: Dict[str, int] = field(default_factory=dict)
    out_after: Dict[str, int] = field(default_factory=dict)

    @property
    def stderr_lines(self) -> List[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr or "Traceback" in self.stdout

    @property
    def hang(self) -> bool:
        return self.status is None

    @property
    def changed_files(self) -> List[str]:
        return sorted(n for n in set(self.out_before) | set(self.out_after)
                      if self.out_before.get(n) != self.out_after.get(n))

    def problems(self) -> List[str]:
        """Empty when the input was refused as it should be."""
        c = self.case
        if self.hang:
            return [f"no end after {TIMEOUT_S} s"]
        found = []
        if self.status != c.expect_status:
            found.append(f"exit status {self.status}, expected {c.expect_status}")
        if self.traceback:
            found.append("a traceback")
        if c.expect_status == 2:
            lines = self.stderr_lines
            if len(lines) != 1 or not lines[0].startswith("error: ") or c.expect not in lines[0]:
                found.append(f"stderr is not one 'error: ...{c.expect}...' line: {lines[:3]}")
        elif c.expect not in self.stdout:
            found.append(f"stdout lacks {c.expect!r}")
        if not c.runtime and self.changed_files:
            found.append(f"files written: {self.changed_files}")
        return found


# --------------------------------------------------------------------------- set-ups


def write_yaml(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data) if data is not None else "# nothing here\n")


def empty_yaml(tmp: Path) -> None:
    write_yaml(tmp / "empty.yaml", None)


def earlier_run(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "best.pdparams").write_bytes(b"an earlier run's weights")
    (tmp / "out" / ".adaptformer-run.json").write_text('{"files": {"best.pdparams": "file"}}')


def files_no_run_wrote(tmp: Path) -> None:
    (tmp / "out" / "code").mkdir(parents=True)
    (tmp / "out" / "notes.txt").write_text("my notes")
    (tmp / "out" / "code" / "main.py").write_text("print('mine')")


def lock_held_by_a_live_process(tmp: Path) -> None:
    (tmp / "out").mkdir()
    # This process (the test or the report) is alive while the case runs.
    (tmp / "out" / ".lock").write_text(f"{os.getpid()} {socket.gethostname()}\n")


def weights_only_as_resume_file(tmp: Path) -> None:
    _save_run_state(tmp / "out" / "last.pdckpt", [], resume_format=False)


def resume_file_of_another_width(tmp: Path) -> None:
    _save_run_state(tmp / "out" / "last.pdckpt", ["model.kwargs.embed_dim=32"], resume_format=True)


def _save_run_state(path: Path, overrides: List[str], resume_format: bool) -> None:
    """The model of the base config (with `overrides`) saved as a run would save it, beside the
    base config's config.yaml (the config the case resumes with)."""
    import adaptformer  # noqa: F401  (CPU environment before paddle loads)
    from adaptformer.weights.checkpoint import save_state
    from adaptformer.config import load_config, save_config
    from adaptformer.engine import build_model

    state = build_model(load_config(BASE, overrides), log=lambda *a: None).state_dict()
    if resume_format:
        state = {"model": state, "optimizer": {}, "loss_scaler": {}, "epoch": 1, "global_step": 4,
                 "best": {"top1": 0.5, "epoch": 1}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_state(state, str(path))
    save_config(load_config(BASE), str(path.parent / "config.yaml"))


def a_run_folder(tmp: Path) -> None:
    """tmp/out as a finished run leaves it (config.yaml, best.pdparams, summary.json, tuned/ and
    its manifest), a backbone file for the tuned folder, and an image to classify in tmp/imgs."""
    import json

    import adaptformer  # noqa: F401  (CPU environment before paddle loads)
    from PIL import Image

    from adaptformer.models.backbone import create_backbone
    from adaptformer.weights.checkpoint import save_state
    from adaptformer.config import load_config, save_config
    from adaptformer.engine import build_model
    from adaptformer.files.run_folder import RUN_FILES, record_written
    from adaptformer.serve.tuned import save_tuned

    out = tmp / "out"
    out.mkdir(parents=True)
    plain = load_config(BASE)
    save_state(create_backbone(plain.model, plain.data.img_size).state_dict(), str(tmp / "backbone.pdparams"))
    cfg = load_config(BASE, [f"train.output_dir={out}", f"model.pretrained={tmp / 'backbone.pdparams'}"])
    model = build_model(cfg, log=lambda *a: None)
    names = ["a", "b", "c", "d"]
    record_written(str(out), *RUN_FILES)
    save_config(cfg, str(out / "config.yaml"))
    save_state(model.state_dict(), str(out / "best.pdparams"))
    (out / "summary.json").write_text(json.dumps({"class_names": names}))
    save_tuned(model, str(out / "tuned"), cfg, names)
    (tmp / "imgs").mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp / "imgs" / "red.png")


def a_regular_file(tmp: Path) -> None:
    (tmp / "file").write_text("a file, so nothing can be created under it\n")


def a_checkpoint_and_a_regular_file(tmp: Path) -> None:
    a_regular_file(tmp)
    (tmp / "ckpt.pdparams").write_bytes(b"only its existence is checked before the output folder")


def a_fifo(name: str) -> Callable[[Path], None]:
    """A named pipe at tmp/`name`: opening it for reading would wait for a writer forever."""
    def setup(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)

    return setup


def a_link_to_dev_zero(tmp: Path) -> None:
    os.symlink("/dev/zero", tmp / "zero.yaml")


def yaml_text(name: str, text) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (tmp / name).write_bytes(data.replace(b"BASE", BASE.encode()))

    return setup


# 9 levels of 10 aliases each: 10^9 nodes once expanded, from a few hundred bytes.
LAUGHS = "_base_: BASE\na: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))


def garbage_lock(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / ".lock").write_bytes(b"\xff\xfe not a pid\n")


def resume_with_metrics(lines: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        _save_run_state(tmp / "out" / "last.pdckpt", [], resume_format=True)
        (tmp / "out" / "metrics.jsonl").write_bytes(lines if isinstance(lines, bytes) else lines.encode())

    return setup


def cifar_with_test_labels_out_of_range(tmp: Path) -> None:
    import cifar_archive

    rng = np.random.default_rng(0)
    batch = cifar_archive._batch(b"labels", "testing batch 1 of 1", np.arange(10), rng)
    batch[b"labels"] = [99] * 10
    cifar_archive.write_cifar_archive(str(tmp / "cifar-10-python.tar.gz"),
                                      replace={"test_batch": cifar_archive._dump(batch)})


def float8_safetensors(tmp: Path) -> None:
    """A .safetensors file of one float8 tensor (a dtype NumPy has no type for), written by hand."""
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}).encode()
    header += b" " * (-len(header) % 8)
    (tmp / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\x38\x40\x48\x50")


def fifo_in_image_folder(tmp: Path) -> None:
    image_folder(None)(tmp)
    os.mkfifo(tmp / "images" / "train" / "a" / "pipe.png")


def image_folder(bad: Optional[bytes]) -> Callable[[Path], None]:
    """10 training images in 2 classes (+ 4 for eval); `bad` is written as train/a/bad.png."""
    def setup(tmp: Path) -> None:
        from PIL import Image

        rng = np.random.default_rng(0)
        for split, count in (("train", 5), ("val", 2)):
            for cls in ("a", "b"):
                folder = tmp / "images" / split / cls
                folder.mkdir(parents=True)
                for i in range(count - (split == "train" and cls == "a" and bad is not None)):
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        if bad is not None:
            (tmp / "images" / "train" / "a" / "bad.png").write_bytes(bad)

    return setup


def folder_args(workers: int, on_bad_image: str = "error") -> List[str]:
    return ["-o", "data.dataset=folder", "-o", "data.data_dir={tmp}/images", "-o", "model.num_classes=2",
            "-o", "data.synthetic_num_classes=2", "-o", "data.batch_size=4", "-o", "train.epochs=1",
            "-o", f"data.num_workers={workers}", "-o", f"data.on_bad_image={on_bad_image}"]


def study_with_a_typo_in_stage_2(tmp: Path) -> None:
    _study(tmp, {"train.epohcs": 2})


def study_with_a_missing_file_in_stage_2(tmp: Path) -> None:
    _study(tmp, {"data.dataset": "cifar10", "data.data_file": str(tmp / "absent.tar.gz")})


def _study(tmp: Path, stage_2_overrides: Dict) -> None:
    write_yaml(tmp / "study.yaml", {"study": {"name": "s", "output_dir": str(tmp / "out"), "stages": [
        {"name": "one", "config": BASE},
        {"name": "two", "config": BASE, "pretrained_from": "one", "overrides": stage_2_overrides},
    ]}})


TEXT_PNG = b"this is a text file named .png\n"
TRUNCATED_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00 "

# --------------------------------------------------------------------------- the table

CASES = [
    # The config: one line, before any work.
    Case("unknown model name", ["-o", "model.name=vit_nope"], "model.name is not a known model: 'vit_nope'"),
    Case("embed_dim not divisible by num_heads", ["-o", "model.kwargs.num_heads=3"],
         "embed_dim 64 is not divisible by num_heads 3"),
    Case("data.img_size 30 for a 32-px patch-4 model", ["-o", "data.img_size=30"],
         "data.img_size is 30 but model vit_tiny_patch4_32 takes 32x32 images"),
    Case("train.eval_every: 0", ["-o", "train.eval_every=0"], "train.eval_every must be >= 1, got 0"),
    Case("optimizer.betas: [0.9]", ["-o", "optimizer.betas=[0.9]"], "optimizer.betas must be [beta1, beta2]"),
    Case("data.num_workers: -1", ["-o", "data.num_workers=-1"], "data.num_workers must be >= 0, got -1"),
    Case("train.label_smoothing: 2", ["-o", "train.label_smoothing=2"], "train.label_smoothing must be in [0, 1)"),
    Case("data.eval_batch_size: 0", ["-o", "data.eval_batch_size=0"], "data.eval_batch_size must be >= 1, got 0"),
    Case("scheduler.warmup_steps: -5", ["-o", "scheduler.warmup_steps=-5"], "scheduler.warmup_steps must be >= 0"),
    Case("optimizer.lr: nan", ["-o", "optimizer.lr=nan"], "optimizer.lr must be a finite number"),
    Case("optimizer.lr: 0", ["-o", "optimizer.lr=0"], "optimizer.lr must be > 0"),
    Case("optimizer.momentum: 1.5", ["-o", "optimizer.momentum=1.5"], "optimizer.momentum must be in [0, 1)"),
    Case("train.epochs: abc", ["-o", "train.epochs=abc"], "train.epochs must be an integer, got 'abc'"),
    Case("data.on_bad_image: maybe", ["-o", "data.on_bad_image=maybe"], "data.on_bad_image must be one of error, skip"),
    Case("method.name: lorra", ["-o", "method.name=lorra"], "has unknown method 'lorra'"),
    Case("misspelled section in -o (tarin.epochs)", ["-o", "tarin.epochs=3"], "-o: unknown key 'tarin'"),
    Case("-o without a value", ["-o", "train.epochs"], "-o train.epochs: expected key=value"),
    Case("empty YAML file", ["-c", "{tmp}/empty.yaml"], "empty.yaml: the file is empty", setup=empty_yaml),
    Case("config file that does not exist", ["-c", "{tmp}/absent.yaml"], "absent.yaml: config file not found"),
    Case("study: a typo in stage 2", ["-c", "{tmp}/study.yaml"], "unknown key 'train.epohcs'",
         setup=study_with_a_typo_in_stage_2),
    Case("study: a missing data file in stage 2", ["-c", "{tmp}/study.yaml"],
         "stage 'two': data.data_file", setup=study_with_a_missing_file_in_stage_2),
    # Files that are not regular files, or not the text they claim: refused, never waited on.
    Case("a FIFO as the config file", ["-c", "{tmp}/pipe.yaml"], "pipe.yaml: is a FIFO (named pipe), not a regular file",
         setup=a_fifo("pipe.yaml")),
    Case("/dev/zero behind a symlink as the config file", ["-c", "{tmp}/zero.yaml"],
         "zero.yaml: is a character device, not a regular file", setup=a_link_to_dev_zero),
    Case("a FIFO given to convert_weights", ["{tmp}/pipe.pth", "{tmp}/x.pdparams"],
         "pipe.pth: is a FIFO (named pipe), not a regular file", tool="convert_weights.py", setup=a_fifo("pipe.pth")),
    *[Case(f"a FIFO named .png in a class folder, num_workers {w}", folder_args(w), "pipe.png: is a FIFO",
           setup=fifo_in_image_folder) for w in (0, 2)],
    Case("a float8 .safetensors given to convert_weights", ["{tmp}/model.safetensors", "{tmp}/x.pdparams"],
         "model.safetensors: unreadable .safetensors", tool="convert_weights.py", setup=float8_safetensors),
    Case("config not UTF-8", ["-c", "{tmp}/latin1.yaml"], "latin1.yaml: not UTF-8 text (byte 0xe9",
         setup=yaml_text("latin1.yaml", "_base_: BASE\n# caf\xe9\n".encode("latin-1"))),
    Case("YAML of nested aliases (a billion nodes once expanded)", ["-c", "{tmp}/laughs.yaml"],
         "laughs.yaml: expands to", setup=yaml_text("laughs.yaml", LAUGHS)),
    Case("YAML nested 10000 deep", ["-c", "{tmp}/deep.yaml"], "deep.yaml: nested more than 64 levels deep",
         setup=yaml_text("deep.yaml", "_base_: BASE\nx: " + "[" * 10000 + "]" * 10000 + "\n")),
    Case("-o value nested 10000 deep", ["-o", "train.seed=" + "[" * 10000 + "]" * 10000],
         "nested more than 64 levels deep"),
    Case("YAML with two train: sections", ["-c", "{tmp}/twice.yaml"], "key 'train' is given twice",
         setup=yaml_text("twice.yaml", "_base_: BASE\ntrain:\n  epochs: 1\ntrain:\n  seed: 3\n")),
    # Values that would cost minutes or gigabytes, or fail deep inside: bounded first.
    Case("train.seed: 2**32", ["-o", "train.seed=4294967296"], "train.seed must be between 0 and 4294967295"),
    Case("model.kwargs.patch_size: 0", ["-o", "model.kwargs.patch_size=0"],
         "model.kwargs.patch_size: must be between 1 and"),
    Case("model.kwargs.depth: 100000", ["-o", "model.kwargs.depth=100000"], "model.kwargs.depth: must be between 1 and 256"),
    Case("a model too large for the machine (depth 256, width 16384)",
         ["-o", "model.kwargs.depth=256", "-o", "model.kwargs.embed_dim=16384", "-o", "model.kwargs.num_heads=16"],
         "training at batch 32 would take about"),
    Case("data.synthetic_train_size: 10^9", ["-o", "data.synthetic_train_size=1000000000"],
         "data.synthetic_train_size must be between 1 and 1000000"),
    Case("data.eval_resize_crop: 0.002", ["-o", "data.eval_resize_crop=0.002"], "data.eval_resize_crop must be at least 0.25"),
    Case("data.std: 1e-45", ["-o", "data.std=[1.0e-45, 0.2, 0.2]"], "data.std must hold values between 0.001"),
    Case("a NUL byte in train.output_dir", ["-c", "{tmp}/nul.yaml"], "train.output_dir must be a path (no NUL",
         setup=yaml_text("nul.yaml", '_base_: BASE\ntrain:\n  output_dir: "a\\0b"\n')),
    Case("an invalid regular expression in method.trainable", ["-o", "method.trainable=['head(']"],
         "method.trainable holds 'head(', not a valid regular expression"),
    Case("an invalid regular expression in optimizer.lr_mult", ["-o", "optimizer.lr_mult={{'[': 2.0}}"],
         "optimizer.lr_mult holds '[', not a valid regular expression"),
    Case("garbage in .lock", [], "names no process", setup=garbage_lock),
    Case("--resume from a checkpoint with an empty optimizer state", ["--resume"], "its optimizer state does not fit",
         setup=resume_with_metrics("")),
    Case("--resume with metrics.jsonl lines that are not objects", ["--resume"],
         "metrics.jsonl: line 1 is not a record of an epoch", setup=resume_with_metrics("[1, 2]\n3\n")),
    Case("--resume with metrics.jsonl not UTF-8", ["--resume"], "metrics.jsonl: not UTF-8 text",
         setup=resume_with_metrics(b'{"epoch": 1, "name": "\xff"}\n')),
    Case("a CIFAR test batch with labels out of range, data.val_fraction 0.2 (read before training)",
         ["-o", "data.dataset=cifar10", "-o", "data.data_file={tmp}/cifar-10-python.tar.gz", "-o", "model.num_classes=10",
          "-o", "data.val_fraction=0.2"],
         "the CIFAR-10 test data holds labels outside [0, 10) (10 of them, e.g. 99)",
         setup=cifar_with_test_labels_out_of_range),
    # The output folder.
    Case("output directory not writable", ["-o", "train.output_dir={tmp}/file/out"],
         "out: cannot write here (a file is in the way",
         setup=a_regular_file),
    Case("output directory holds an earlier run (no --resume/--overwrite)", [], "already holds a run",
         setup=earlier_run),
    Case("--overwrite into a folder holding files no run wrote", ["--overwrite"],
         "holds files no run of this package wrote (code, notes.txt", setup=files_no_run_wrote),
    Case("--resume and --overwrite together", ["--resume", "--overwrite"],
         "--resume and --overwrite cannot be combined", setup=earlier_run),
    Case("a second training into a folder in use", [], "is in use by process", setup=lock_held_by_a_live_process),
    Case("--resume with nothing to resume", ["--resume"], "nothing to resume"),
    Case("--resume from a weights-only file (best.pdparams renamed)", ["--resume"], "not a resume checkpoint",
         setup=weights_only_as_resume_file),
    Case("--resume from a checkpoint of another width", ["--resume"], "'cls_token' has shape [1, 1, 32], the model expects [1, 1, 64]",
         setup=resume_file_of_another_width),
    Case("eval.py writing into an unwritable folder",
         ["-c", "{base}", "--checkpoint", "{tmp}/ckpt.pdparams", "--json", "{tmp}/file/eval.json"],
         "file: cannot write here (a file is in the way", tool="eval.py", setup=a_checkpoint_and_a_regular_file),
    Case("convert_weights.py writing into an unwritable folder", ["{tmp}/file", "{tmp}/file/x.pdparams"],
         "file: cannot write here (a file is in the way", tool="convert_weights.py", setup=a_regular_file),
    # A tool's outputs may replace neither its inputs nor a run's files.
    Case("predict.py --json onto the checkpoint it reads",
         ["--checkpoint", "{out}/best.pdparams", "{tmp}/imgs", "--json", "{out}/best.pdparams"],
         "best.pdparams: is the input", tool="predict.py", setup=a_run_folder),
    Case("export.py -o onto the run's summary.json", ["--checkpoint", "{out}/best.pdparams", "-o", "{out}/summary"],
         "would replace summary.json of the run", tool="export.py", setup=a_run_folder),
    Case("export.py --tuned D -o D/tuned", ["--tuned", "{out}/tuned", "-o", "{out}/tuned/tuned"],
         "would replace tuned.json of the tuned folder", tool="export.py", setup=a_run_folder),
    Case("export.py -o a folder (prefix ending in /)", ["--checkpoint", "{out}/best.pdparams", "-o", "{out}/exported/"],
         "is a folder; -o takes a path prefix", tool="export.py", setup=a_run_folder),
    Case("eval.py --json onto the run's metrics.jsonl",
         ["--checkpoint", "{out}/best.pdparams", "--json", "{out}/metrics.jsonl"],
         "would replace metrics.jsonl of the run", tool="eval.py", setup=a_run_folder),
    # While training: one line, the last good checkpoint kept.
    Case("NaN loss (optimizer.lr=1e30)", ["-o", "optimizer.lr=1e30", "-o", "train.epochs=1",
                                          "-o", "scheduler.warmup_epochs=0"],
         "loss became nan at epoch 1 step", runtime=True),
    Case("disk full while writing a checkpoint (file size limit 100 kB)", ["-o", "train.epochs=1"],
         "the disk or file size limit is full", runtime=True, file_size_limit=100_000),
    # Unreadable images in a folder dataset, with every worker count.
    *[Case(f"text file named .png, num_workers {w}", folder_args(w), "bad.png: cannot read this image",
           setup=image_folder(TEXT_PNG), runtime=True) for w in (0, 1, 2)],
    Case("zero-byte .png, num_workers 0", folder_args(0), "bad.png: cannot read this image",
         setup=image_folder(b""), runtime=True),
    Case("truncated .png, num_workers 2", folder_args(2), "bad.png: cannot read this image",
         setup=image_folder(TRUNCATED_PNG), runtime=True),
    *[Case(f"text file named .png with data.on_bad_image: skip, num_workers {w}", folder_args(w, "skip"),
           "data.on_bad_image skip: leaving out", setup=image_folder(TEXT_PNG), runtime=True, expect_status=0)
      for w in (0, 2)],
]


# --------------------------------------------------------------------------- running


def fill(arg: str, tmp: Path) -> str:
    return arg.format(tmp=tmp, out=tmp / "out", base=BASE)


def command(case: Case, tmp: Path) -> List[str]:
    args = [fill(a, tmp) for a in case.args]
    if case.tool == "train.py" and "-c" not in args:
        args = ["-c", BASE, "-o", f"train.output_dir={tmp / 'out'}", *args]
    return [sys.executable, os.path.join("tools", case.tool), *args]


def files_under(folder: Path) -> Dict[str, int]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def run_case(case: Case, tmp: Path) -> Outcome:
    tmp.mkdir(parents=True, exist_ok=True)
    if case.setup:
        case.setup(tmp)
    before = files_under(tmp / "out")

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (case.file_size_limit, case.file_size_limit))

    env = dict(os.environ, PYTHONPATH=ROOT)
    try:
        r = subprocess.run(command(case, tmp), cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                           preexec_fn=limit_file_size if case.file_size_limit else None)
        status, stdout, stderr = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        status, stdout, stderr = None, str(e.stdout or ""), str(e.stderr or "")
    return Outcome(case, status, stdout, stderr, before, files_under(tmp / "out"))


def run_all(cases: List[Case], tmp_root: Path, parallel: int = 2) -> List[Outcome]:
    """Each case in its own folder; `parallel` at a time (the machine has 2 cores)."""
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda ic: run_case(ic[1], tmp_root / f"case{ic[0]:02d}"), enumerate(cases)))
