"""A screenshot of the VisualDL board of a run or a study, taken with headless Chromium.

    python tools/board_screenshot.py output/cpu_study --out board.png [--page scalar] [--size 1400x900]

It starts `visualdl --logdir LOGDIR --language en` on a free local port (without --language,
VisualDL 2.5.3 answers HTTP 500 to a browser that asks for neither English nor Chinese), waits
until it answers, lets Chromium load the page and run its scripts for --wait-ms of page time,
writes the PNG and stops the server. It installs nothing: Chromium must be on PATH.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "no Chromium on PATH: install it with `apt-get install chromium` (Debian) and run this again"
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def visualdl_command() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "visualdl")
    found = beside if os.path.exists(beside) else shutil.which("visualdl")
    if found is None:
        sys.exit("error: no visualdl command: pip install visualdl")
    return found


def wait_until_serving(base: str, server: subprocess.Popen, log_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"error: visualdl exited with code {server.returncode}; its output: {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/alive", timeout=1) as response:
                if response.status == 204:
                    return
        except OSError:
            pass
        time.sleep(0.1)  # the poll's interval
    sys.exit(f"error: visualdl did not answer at {base} within {START_TIMEOUT_S} s; its output: {log_path}")


def stop(process: subprocess.Popen) -> None:
    """A process and what it started, by the process group its PID leads."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def take(command, log_path: str, timeout: float) -> int:
    """Run Chromium with its output in a file (its helper processes outlive it and would hold a pipe
    open), then end what it left in its process group; its exit code, or -1 after the timeout."""
    with open(log_path, "w") as log:
        browser = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        return browser.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1
    finally:
        stop(browser)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", help="a run's folder (its vdl/ inside) or a study's output folder")
    parser.add_argument("--out", default="visualdl_board.png", help="the PNG to write (default: %(default)s)")
    parser.add_argument("--page", default="scalar", help="the board's page: scalar, ... (default: %(default)s)")
    parser.add_argument("--size", default="1400x900", help="window size WIDTHxHEIGHT (default: %(default)s)")
    parser.add_argument("--wait-ms", type=int, default=15000,
                        help="page time Chromium gives the board's scripts to draw (default: %(default)s)")
    args = parser.parse_args()
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        sys.exit(INSTALL_HINT)
    if not os.path.isdir(args.logdir):
        sys.exit(f"error: {args.logdir}: no such folder")
    width, height = (int(x) for x in args.size.lower().split("x"))
    out = os.path.abspath(args.out)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="board_screenshot_") as scratch:
        log_path = os.path.join(scratch, "visualdl.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen([visualdl_command(), "--logdir", args.logdir, "--host", "127.0.0.1", "--port",
                                       str(port), "--language", "en", "--disable-telemetry"], stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until_serving(base, server, log_path)
            shot_path = os.path.join(scratch, "board.png")
            command = [browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                       f"--user-data-dir={os.path.join(scratch, 'profile')}", f"--window-size={width},{height}",
                       f"--virtual-time-budget={args.wait_ms}", f"--screenshot={shot_path}", f"{base}/app/{args.page}"]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
            code = take(command, os.path.join(scratch, "chromium.log"), timeout=120 + args.wait_ms / 1000)
            if code != 0 or not os.path.exists(shot_path):
                with open(os.path.join(scratch, "chromium.log"), errors="replace") as f:
                    sys.exit(f"error: Chromium wrote no screenshot (exit {code}): {f.read().strip()[-800:]}")
            shutil.move(shot_path, out)
        finally:
            stop(server)
    print(f"{out}: the board of {args.logdir} ({base}/app/{args.page}, {width}x{height})")


if __name__ == "__main__":
    main()
