"""The command line: `runner COMMAND ...` (and `python -m runner`).

Exit status: 0 success, 1 a node failed, 2 the workflow or the command line is invalid, 130 interrupted.
Commands that need no model never import torch, diffusers or transformers.
"""

from __future__ import annotations

import gc
import os
import signal
import sys

EXIT_OK, EXIT_NODE_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

# The commands whose start is timed (bench/start_time.py: a fully cached `runner run` in a new process, issue 28).
# In a process of their own they start with Python's cyclic garbage collector paused: importing pydantic and
# declaring runner's models and node types makes some hundred thousand objects that live as long as the process,
# and the collector's passes over them are about 3% of a cached run's work. It resumes (see `work_starts`) when
# the command starts its real work, or at once for every other command.
QUICK_START = ("run", "validate")
_paused = False
_command: str | None = None  # the command this process runs (`main` with the real command line)


def work_starts() -> None:
    """The start is over (modules imported, workflow validated and planned): resume the garbage collector paused
    for it, leaving what the start made (modules, classes, validators: they live as long as the process) out of
    its passes from now on. Nothing happens when it was not paused (a Session, a test calling `main(argv)`)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    global _paused
    if argv is None:  # the real command line (not a test calling main): SIGTERM and SIGHUP stop a run like Ctrl-C
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _as_interrupt)
        if gc.isenabled():
            gc.disable()
            _paused = True
    try:
        code = _main(argv)
    finally:
        work_starts()
    if argv is None:
        # everything is written: a signal from now on must neither change the exit status nor print a traceback
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
    if code == EXIT_INTERRUPTED and argv is None:
        # A Ctrl-C that landed inside an import can make CPython re-raise SIGINT at shutdown (exit -2);
        # everything is written and flushed, so leave with the documented status instead.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    if argv is None and _command in QUICK_START:
        _leave(code)
    return code


def _leave(code: int) -> None:
    """End the process without the interpreter's teardown (freeing every module and object one by one: about 5% of
    a cached run's work) where nothing needs it: everything is written, files are closed by `with` blocks, and
    neither torch nor Ray (whose threads and exit hooks want the normal path) was imported. What Python would do
    at exit that can matter still happens: the exit hooks (atexit: logging, temporary folders), then stdout and
    stderr are flushed."""
    if threading_started() or any(name in sys.modules for name in ("torch", "ray")):
        return
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe (`runner validate ... | head`): Python's own exit would not fail here
        pass
    os._exit(code)


def threading_started() -> bool:
    """Whether a thread besides the main one is alive (it would be stopped by a teardown-less exit)."""
    threading = sys.modules.get("threading")
    return threading is not None and threading.active_count() > 1


def _as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _main(argv: list[str] | None) -> int:
    from .commands import COMMANDS
    from .parser import build_parser, command_of

    arguments = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=command_of(arguments))
    args = parser.parse_args(arguments)
    args.command_line = ["runner", *arguments]  # recorded in run manifests
    global _command
    _command = args.command
    if args.command not in QUICK_START:
        work_starts()
    from ..core.errors import Problems

    try:
        from ..core.limits import check_limits

        check_limits()  # a malformed RUNNER_MAX_* stops every command here, whatever it would have read
        return COMMANDS[args.command](args)
    except Problems as exc:  # an invalid workflow (WorkflowError) or command line (CommandError): exit status 2
        if args.debug:
            raise
        _print_problems(exc)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _print_problems(exc) -> None:
    print(str(exc), file=sys.stderr)


__all__ = ["EXIT_INVALID", "EXIT_INTERRUPTED", "EXIT_NODE_FAILED", "EXIT_OK", "main"]
