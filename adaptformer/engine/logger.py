"""Where a run reports: console progress, metrics.jsonl and VisualDL scalars.
Only the main process writes; the others get a logger that does nothing."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, List, Optional

from paddle.hapi.progressbar import ProgressBar

from adaptformer.weights.checkpoint import CheckpointError
from adaptformer.files import read_text
from adaptformer.files.atomic import atomic_write_text


def board_command(logdir: str) -> str:
    """The command that opens a VisualDL board in any browser: without --language, VisualDL 2.5.3
    answers HTTP 500 to a browser whose language is neither English nor Chinese."""
    return f"visualdl --logdir {logdir} --language en"


class RunLogger:
    def __init__(self, output_dir: str, enabled: bool = True, log_every: int = 20):
        self.output_dir = output_dir
        self.enabled = enabled
        self.log_every = max(1, log_every)
        self.metrics_path = os.path.join(output_dir, "metrics.jsonl")
        self._writer = None
        self._bar: Optional[ProgressBar] = None
        self._interactive = sys.stdout.isatty()
        self._epoch_start = 0.0
        self._records: List[Dict] = []  # this run's records; a resume starts from the kept ones
        self._checked: Optional[List[Dict]] = None  # metrics.jsonl as check_records read it

    # ----------------------------------------------------------- console
    def info(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.enabled:
            print(f"epoch {epoch}/{epochs}", flush=True)
            self._bar = ProgressBar(num=steps, verbose=1, name="step") if self._interactive else None
            self._epoch_start = time.time()

    def step(self, step_in_epoch: int, steps: int, values: Dict[str, float]) -> None:
        if not self.enabled:
            return
        if self._bar is not None:  # a terminal: one bar redrawn in place, with ETA
            self._bar.update(step_in_epoch, list(values.items()))
        elif step_in_epoch % self.log_every == 0 or step_in_epoch == steps:  # a log file: plain lines
            per_step = (time.time() - self._epoch_start) / step_in_epoch
            shown = " ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"  step {step_in_epoch}/{steps} {shown} ({per_step:.2f} s/step, "
                  f"ETA {per_step * (steps - step_in_epoch):.0f} s)", flush=True)

    # ----------------------------------------------------------- VisualDL
    @property
    def writer(self):
        if self._writer is None:
            from visualdl import LogWriter

            logdir = os.path.join(self.output_dir, "vdl")
            self._writer = LogWriter(logdir=logdir)
            print(f"VisualDL: {board_command(logdir)}", flush=True)
        return self._writer

    def scalars(self, values: Dict[str, float], step: int) -> None:
        if self.enabled:
            for tag, value in values.items():
                self.writer.add_scalar(tag=tag, value=float(value), step=step)

    # ----------------------------------------------------------- metrics.jsonl
    def record(self, record: Dict) -> None:
        """The whole file is rewritten atomically (one line per epoch, so it stays small): a crash
        never leaves a torn line, and a new run replaces an earlier run's file at its first epoch."""
        if self.enabled:
            self._records.append(record)
            self._write_records()

    def check_records(self) -> None:
        """Read metrics.jsonl now, so that a damaged one is refused before resuming restores anything;
        truncate_records then uses what was read."""
        if self.enabled and os.path.exists(self.metrics_path):
            self._checked = read_records(self.metrics_path)

    def truncate_records(self, last_epoch: int) -> None:
        """On resume, drop records of epochs after the checkpoint (written before a crash)."""
        if not self.enabled or not os.path.exists(self.metrics_path):
            return
        records = read_records(self.metrics_path) if self._checked is None else self._checked
        self._records = [r for r in records if r["epoch"] <= last_epoch]
        self._write_records()

    def _write_records(self) -> None:
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in self._records))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_records(path: str) -> List[Dict]:
    """The records of a metrics.jsonl; a last line cut off by a crash (older versions appended) is dropped."""
    lines = [line for line in read_text(path, "metrics", "a metrics.jsonl").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if i == len(lines) - 1:
                break
            raise CheckpointError(f"{path}: line {i + 1} is not a JSON record") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise CheckpointError(f"{path}: line {i + 1} is not a record of an epoch (a JSON object with an "
                                  "integer 'epoch')")
        records.append(record)
    return records
