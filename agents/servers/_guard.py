"""Exec wrapper that ties a server's life to aloesim's:

    python -I _guard.py PARENT_PID PROGRAM ARGS...

sets ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (Linux), exits if the parent has
already died, then replaces itself with ``PROGRAM ARGS...`` (the setting
survives ``exec``).  Run by path with the standard library only, so it starts
fast and runs no code of the parent after ``fork`` (unlike ``preexec_fn``)."""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, argv = int(sys.argv[1]), sys.argv[2:]
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"cannot run {argv[0]!r}: {err.strerror}", flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main()
