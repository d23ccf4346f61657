"""Run ``python -m flows.cli`` as a user does: a real process, from outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import REPO


def synthgen(data: Path, *args: str, cwd: Path | None = None, timeout: float = 300,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """``synthgen --data-dir DATA ARGS...`` in a subprocess; stdout and stderr captured as text."""
    base = _base_env()
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "--data-dir", str(data), *args], capture_output=True, text=True,
        cwd=cwd or data.parent, env={**base, **(env or {})}, timeout=timeout,
    )


# One interpreter imports what ``python -m flows.cli`` imports before a command runs, then forks one child per
# run: each child is that process from there on (its own argv, environment, folder, stdin, stdout, stderr and
# exit status), minus the 0.8 s of start-up every one of a hundred runs would otherwise repeat.
_FORKED_CHILD = r"""
import json, os, sys, traceback
from pathlib import Path

import importlib

import flows.cli.app as cli

main = str(Path(cli.__file__).with_name("__main__.py"))  # sys.argv[0] under `python -m flows.cli`


def preload(names):  # libraries every run would import (no service's: those read the run's environment)
    for name in names:
        importlib.import_module(name)


def child(run):
    try:
        os.chdir(run["cwd"])
        os.environ.clear()
        os.environ.update(run["env"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, path in ((1, run["stdout"]), (2, run["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        sys.argv = [main, *run["args"]]
        cli.entrypoint()  # ends the process itself, with the command's exit status
    except BaseException:
        traceback.print_exc()
    os._exit(70)
"""
FORKING_RUNNER = _FORKED_CHILD + r"""
runs, jobs, out = json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2]), sys.argv[3]
preload(sys.argv[4:])
pending, live, codes = list(enumerate(runs)), {}, {}
while pending or live:
    while pending and len(live) < jobs:
        i, run = pending.pop(0)
        pid = os.fork()
        if pid == 0:
            child(run)
        live[pid] = i
    pid, status = os.wait()
    codes[live.pop(pid)] = os.waitstatus_to_exitcode(status)
Path(out).write_text(json.dumps(codes))
"""


# What checking a job's models imports (torch, diffusers, transformers, sentence-transformers): none of it
# starts a thread or reads the environment a run sets (Prefect and MLflow do, so they are never preloaded).
MODEL_LIBRARIES = ("torch", "diffusers.pipelines.pipeline_utils", "transformers", "sentence_transformers")


def synthgen_runs(runs: list[tuple[Path, list[str]]], jobs: int = 3, timeout: float = 600,
                  preload: tuple[str, ...] = ()) -> list[subprocess.CompletedProcess]:
    """``synthgen --data-dir DATA ARGS...`` for each ``(data, args)``, ``jobs`` at a time, as ``synthgen`` runs one.

    For many short runs (bad input that fails before any service starts): each is a fork of one
    interpreter that already imported the CLI, so it behaves as its own process from the command on.
    ``preload``: modules that interpreter imports too (``MODEL_LIBRARIES`` for runs that check models).
    Commands that start services or worker processes should use ``synthgen``.
    """
    base = _base_env()
    folder = Path(tempfile.mkdtemp(prefix="synthgen-runs-"))
    try:
        spec = [{"cwd": str(data.parent), "env": base, "args": ["--data-dir", str(data), *args],
                 "stdout": str(folder / f"{i}.out"), "stderr": str(folder / f"{i}.err")}
                for i, (data, args) in enumerate(runs)]
        (folder / "runs.json").write_text(json.dumps(spec))
        runner = subprocess.run([sys.executable, "-c", FORKING_RUNNER, str(folder / "runs.json"), str(jobs),
                                 str(folder / "codes.json"), *preload], capture_output=True, text=True, cwd=folder,
                                env=base, timeout=timeout)
        assert runner.returncode == 0, runner.stderr[-3000:]
        codes = json.loads((folder / "codes.json").read_text())
        return [subprocess.CompletedProcess(["synthgen", *s["args"]], codes[str(i)],
                                            Path(s["stdout"]).read_text(), Path(s["stderr"]).read_text())
                for i, s in enumerate(spec)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _base_env() -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("SYNTHGEN_DATA", "SYNTHGEN_DEBUG")}
    base["PYTHONPATH"] = str(REPO)
    return base


def assert_clean_error(proc: subprocess.CompletedProcess, names: list[str], code: int = 2) -> None:
    """Exit ``code``, one ``error:`` message naming each of ``names``, and no traceback anywhere."""
    both = proc.stdout + proc.stderr
    assert proc.returncode == code, both[-3000:]
    assert "Traceback" not in both and 'File "' not in both, both[-3000:]
    message = " ".join(proc.stderr.split())  # names are checked across any line breaks
    assert "error:" in message or "Error" in message, both[-3000:]
    for name in names:
        assert " ".join(name.split()) in message, f"{name!r} not named in: {message[-2000:]}"


def seed_data(root: Path) -> tuple[Path, Path]:
    """A data folder with a real dataset `real` (20 digits, no embeddings) and a synthetic `synth` (6 rows).

    Returns (data folder, the image folder `real` was ingested from). No model is loaded.
    """
    from catalog import Catalog, ingest_folder, samples_to_table
    from synthgen.digits import export_image_folder
    from tests.conftest import make_samples

    good = export_image_folder(root / "good")
    for folder in good.iterdir():
        for f in sorted(folder.glob("*.png"))[2:]:
            f.unlink()
    data = root / "seed"
    cat = Catalog(data / "catalog")
    ingest_folder(cat, "real", good)
    cat.create("synth", "synthetic")
    cat.commit("synth", [cat.write_shard("synth", samples_to_table(make_samples(6), embedding_model="m"))],
               embedding_model="m")
    return data, good


# The forking runner's child, as a server: one interpreter imports the CLI (and ``preload``), then forks one child
# per command it reads on stdin, in turn, and answers with its exit status ("timeout" when it ran past its
# ``timeout`` and was killed). For a module whose commands depend on each other (each reads what the one before
# wrote), one at a time, as ``synthgen`` runs them.
FORK_SERVER = _FORKED_CHILD + r"""
import time

preload(sys.argv[1:])
for line in sys.stdin:
    run = json.loads(line)
    pid = os.fork()
    if pid == 0:
        child(run)
    deadline = time.monotonic() + run["timeout"]
    while not (ended := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
        time.sleep(0.02)
    if not ended[0]:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(ended[1]) if ended[0] else "timeout", flush=True)
"""


class ForkedCli:
    """``synthgen(data, *args, cwd=, timeout=, env=)`` as ``synthgen`` above, each command a fork of one interpreter
    that imported the CLI (and ``preload``): its own process from the command on (argv, environment, folder, stdin,
    stdout, stderr, exit status), minus the start-up. Only for commands that start no service, worker or server and
    are not signalled: those stay ``synthgen``'s fresh processes. ``close()`` ends the interpreter."""

    def __init__(self, preload: tuple[str, ...] = ()):
        self.folder = Path(tempfile.mkdtemp(prefix="synthgen-forked-"))
        self.server = subprocess.Popen([sys.executable, "-c", FORK_SERVER, *preload], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, cwd=self.folder, env=_base_env())
        self.count = 0

    def __call__(self, data: Path, *args: str, cwd: Path | None = None, timeout: float = 300,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        self.count += 1
        out, err = self.folder / f"{self.count}.out", self.folder / f"{self.count}.err"
        run = {"cwd": str(cwd or data.parent), "env": {**_base_env(), **(env or {})},
               "args": ["--data-dir", str(data), *args], "stdout": str(out), "stderr": str(err), "timeout": timeout}
        self.server.stdin.write(json.dumps(run) + "\n")
        self.server.stdin.flush()
        code = self.server.stdout.readline().strip()
        assert code, f"the forking interpreter ended (exit {self.server.poll()})"
        if code == "timeout":
            raise subprocess.TimeoutExpired(["synthgen", *run["args"]], timeout)
        code = int(code)
        proc = subprocess.CompletedProcess(["synthgen", *run["args"]], code, out.read_text(), err.read_text())
        out.unlink()
        err.unlink()
        return proc

    def close(self) -> None:
        self.server.stdin.close()
        assert self.server.wait(timeout=60) == 0
        shutil.rmtree(self.folder, ignore_errors=True)
