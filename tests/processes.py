"""Independent commands run side by side in tests (torch-free: the add-on suites under other
Blenders import it too)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_side_by_side(commands: Sequence[Sequence[str]], cwd: Path, env: Mapping[str, str] | None = None,
                     timeout: float = 600.0) -> None:
    """Start every command (an argv each) at once and wait for all of them within ``timeout`` s;
    each must exit 0, else the assertion names it with the end of its output (stdout and stderr).
    The others are killed when one fails."""
    with contextlib.ExitStack() as stack:
        runs = []
        for argv in commands:
            log = stack.enter_context(tempfile.TemporaryFile("w+"))
            proc = stack.enter_context(subprocess.Popen(list(argv), cwd=cwd, stdout=log,
                                                        stderr=subprocess.STDOUT, text=True,
                                                        env=None if env is None else dict(env)))
            stack.callback(lambda p=proc: p.poll() is None and p.kill())  # on a failure, before the wait
            runs.append((argv, proc, log))
        deadline = time.monotonic() + timeout
        for argv, proc, log in runs:
            code = proc.wait(max(deadline - time.monotonic(), 1.0))
            log.seek(0)
            assert code == 0, f"{' '.join(map(str, argv))} failed:\n{log.read()[-4000:]}"
