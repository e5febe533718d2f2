"""Run the table of bad inputs (tests/bad_inputs.py) through the CLI and write what each gave
to docs/reliability_inputs.md, with the counts of tracebacks, hangs and silent wrongs.

    python tools/reliability_report.py [--out docs/reliability_inputs.md]
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import _cli

sys.path.insert(0, os.path.join(_cli.ROOT, "tests"))

from bad_inputs import CASES, TIMEOUT_S, run_all  # noqa: E402


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def what_it_gave(outcome) -> str:
    if outcome.hang:
        return f"(no end after {TIMEOUT_S} s)"
    if outcome.case.expect_status == 0:
        return next((line for line in outcome.stdout.splitlines() if outcome.case.expect in line), "(nothing)")
    return outcome.stderr_lines[-1] if outcome.stderr_lines else "(nothing on stderr)"


def report(outcomes, command: str) -> str:
    tracebacks = sum(o.traceback for o in outcomes)
    hangs = sum(o.hang for o in outcomes)
    # Ended without a traceback or hang, but not as the table says (exit status, message, files).
    silent_wrongs = sum(bool(o.problems()) and not o.traceback and not o.hang for o in outcomes)
    lines = [
        "# Bad inputs and what each gives",
        "",
        f"Written by `{command}` from the table in `tests/bad_inputs.py` (also run by",
        "`tests/test_bad_inputs.py`). Each input runs the CLI in a fresh process on",
        "`configs/cpu/smoke_synthetic.yaml` (paths below are the run's temporary folders).",
        "",
        f"- inputs tried: {len(outcomes)}",
        f"- refused or handled as expected: {sum(not o.problems() for o in outcomes)}",
        f"- tracebacks: {tracebacks}",
        f"- hangs: {hangs}",
        f"- silent wrongs (wrong exit status, message or files written): {silent_wrongs}",
        "",
        "| input | exit | what it gave (the stderr line; stdout for data.on_bad_image: skip) | files written | as expected |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        written = ", ".join(o.changed_files) if o.changed_files else "none"
        verdict = "yes" if not o.problems() else "NO: " + "; ".join(o.problems())
        lines.append(f"| {cell(o.case.name)} | {o.status} | `{cell(what_it_gave(o))}` | {cell(written)} | "
                     f"{cell(verdict)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join("docs", "reliability_inputs.md"))
    args = parser.parse_args()
    from adaptformer.files.atomic import atomic_write_text

    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as tmp:
        outcomes = run_all(CASES, Path(tmp))
    text = report(outcomes, "python tools/reliability_report.py")
    atomic_write_text(args.out, text.replace(tmp, "TMP").replace(_cli.ROOT + os.sep, ""))
    print(f"wrote {args.out}: {len(outcomes)} inputs, {sum(bool(o.problems()) for o in outcomes)} not as expected")


if __name__ == "__main__":
    _cli.run(main)
