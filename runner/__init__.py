"""runner: declarative YAML workflows for Hugging Face diffusers.

The Python API is `runner.Session` (one warm engine for many runs), `runner.WorkflowError` (an invalid workflow,
with every located problem) and `runner.CommandError` (an argument a Session or call cannot use: a folder, an
option, a run's name); `Run.raise_for_status()` raises `runner.RunFailed` for a run that did not finish. `runner.Client` submits workflows
to a `runner serve` server and returns the same Run objects. Importing
runner imports neither torch nor diffusers.
"""

__version__ = "0.1.0"
__all__ = ["Client", "CommandError", "Run", "RunFailed", "Session", "Sweep", "WorkflowError", "__version__"]


def __getattr__(name: str):
    # loaded on first use, so that `import runner` (and the CLI's start) stays cheap
    if name in ("Session", "Run", "RunFailed", "Sweep"):
        from .engine import session

        return getattr(session, name)
    if name == "Client":
        from .server.client import Client

        return Client
    if name == "WorkflowError":
        from .language.errors import WorkflowError

        return WorkflowError
    if name == "CommandError":
        from .core.errors import CommandError

        return CommandError
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
