"""Running the real command line for the reliability catalogue (tests/test_reliability.py) and
the contract table (tests/test_contract.py).

A fresh ``python -m rd`` spends seconds importing torch and timm, so most cases run in a process
forked from a multiprocessing *forkserver* that has imported ``rd`` once: each case is still its
own process running ``rd.cli.main`` with its own stderr file descriptor and exit status."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CAT = "brick"
PROGRESS = re.compile(r"^epoch \d+/\d+ ")


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def errors(self) -> list[str]:
        """stderr lines that are neither warnings nor training progress."""
        return [line for line in self.lines() if not line.startswith("warning: ") and not PROGRESS.match(line)]

    def warnings(self) -> list[str]:
        return [line for line in self.lines() if line.startswith("warning: ")]


@dataclass(frozen=True)
class Trigger:
    """When a forked case signals itself: once the line holding ``text`` is on its stderr, or when
    it opens for writing the ``nth`` file whose name matches the glob ``opens``. The signal is
    the real one (kernel, handler, unwinding); raising it from inside the case pins the moment,
    where a signal sent by the test after polling a file arrives whenever the scheduler allows."""

    sig: int
    text: str | None = None
    opens: str | None = None
    nth: int = 1


class _StderrTrigger:
    """A text stream that sends ``trigger.sig`` to its own process once ``trigger.text`` is written."""

    def __init__(self, stream, trigger: Trigger) -> None:
        self._stream, self._trigger, self._seen, self._fired = stream, trigger, "", False

    def write(self, text: str) -> int:
        n = self._stream.write(text)
        if not self._fired:
            self._seen = (self._seen + text)[-4096:]
            at = self._seen.find(self._trigger.text)
            if at >= 0 and "\n" in self._seen[at:]:   # the whole line is out
                self._fired = True
                self._stream.flush()
                os.kill(os.getpid(), self._trigger.sig)
        return n

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _arm(trigger: Trigger) -> None:
    """Make the current (forked) process signal itself as ``trigger`` says."""
    if trigger.text is not None:
        sys.stderr = _StderrTrigger(sys.stderr, trigger)
    if trigger.opens is not None:
        import fnmatch

        seen: list[str] = []

        def hook(event: str, args: tuple) -> None:
            if event != "open" or len(seen) >= trigger.nth or not isinstance(args[1], str) or "w" not in args[1]:
                return
            if not isinstance(args[0], (str, bytes, os.PathLike)):   # open(fd): no name to match
                return
            if fnmatch.fnmatch(os.path.basename(os.fsdecode(args[0])), trigger.opens):
                seen.append(os.fsdecode(args[0]))
                if len(seen) == trigger.nth:
                    os.kill(os.getpid(), trigger.sig)

        sys.addaudithook(hook)   # audit hooks cannot be removed: fine in a one-shot child


def _cli_child(argv: list[str], cwd: str, env: dict[str, str], out_base: str, fsize: int | None,
               trigger: Trigger | None = None) -> None:
    """Body of one forked case: what ``python -m rd <argv>`` does, with stdio sent to files."""
    out = os.open(out_base + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(out_base + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    rc = 1
    # Ctrl-C as a terminal delivers it, even when the test run itself was started in the
    # background (`&` in a script, nohup), which leaves SIGINT ignored in every child.
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if trigger is not None:
            _arm(trigger)
        os.chdir(cwd)
        os.environ.update(env)
        if fsize is not None:   # a "full disk": writes beyond fsize bytes fail with EFBIG
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        import torch

        torch.set_num_threads(1)
        from rd.cli import main

        rc = main(argv)
    except SystemExit as exc:   # argparse
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:       # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        rc = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload([_cli_child.__module__, "rd.cli", "rd.data", "rd.train", "rd.evaluate",
                             "rd.smoke", "rd.stats", "rd.aggregate", "rd.report", "rd.complexity", "pandas",
                             "jinja2"])


def rd(*args: str, cwd: Path, env: dict[str, str] | None = None, fsize: int | None = None,
       timeout: float = 300) -> Result:
    """``python -m rd *args`` in a process forked from the warm forkserver."""
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "io")
        proc = _CTX.Process(target=_cli_child, args=(list(args), str(cwd), dict(env or {}), base, fsize))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            raise AssertionError(f"python -m rd {' '.join(args)} did not finish in {timeout} s")
        read = lambda name: Path(f"{base}.{name}").read_text(errors="replace") if Path(f"{base}.{name}").exists() else ""  # noqa: E731
        return Result(proc.exitcode, read("out"), read("err"))


def rd_until(trigger: Trigger, *args: str, cwd: Path, timeout: float = 300) -> Result:
    """Run ``python -m rd *args`` (forked) that signals itself as ``trigger`` says; it must not exit 0."""
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "io")
        proc = _CTX.Process(target=_cli_child, args=(list(args), str(cwd), {}, base, None, trigger))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        err = Path(base + ".err").read_text(errors="replace")
        assert proc.exitcode is not None and proc.exitcode != 0, f"not interrupted ({proc.exitcode}): {err}"
        return Result(proc.exitcode, Path(base + ".out").read_text(), err)


def rd_subprocess(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
    """``python -m rd *args`` in a fresh interpreter (for import-time settings)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "rd", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_failure(res: Result, *needles: str, absent: tuple[Path, ...] = ()) -> str:
    """The standard: exit 2, one ``error: ... Fix: ...`` line, no traceback, no result file."""
    assert res.rc == 2, f"exit {res.rc}\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    errors = res.errors()
    assert len(errors) == 1, f"expected one error line, got:\n{res.stderr}"
    line = errors[0]
    assert line.startswith("error: ") and " Fix: " in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    for path in absent:
        assert not path.exists(), f"{path} was left behind"
    return line


def no_files(folder: Path) -> bool:
    """True when ``folder`` is missing or holds no file (an empty run folder is harmless)."""
    return not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))
