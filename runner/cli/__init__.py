"""The command line: `runner COMMAND ...` (and `python -m runner`).

Exit status: 0 success, 1 a node failed, 2 the workflow or the command line is invalid, 130 interrupted.
Commands that need no model never import torch, diffusers or transformers.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_OK, EXIT_NODE_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the real command line (not a test calling main): SIGTERM and SIGHUP stop a run like Ctrl-C
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _as_interrupt)
    code = _main(argv)
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
    return code


def _as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _main(argv: list[str] | None) -> int:
    from .commands import COMMANDS
    from .parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = ["runner", *(sys.argv[1:] if argv is None else argv)]  # recorded in run manifests
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
