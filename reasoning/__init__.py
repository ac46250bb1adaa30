"""Test-time-compute reasoning: strategies over backends under enforced budgets.

    import reasoning as rz
    from reasoning.strategies import SelfConsistency
    result = rz.solve("What is 17*23?", strategy=SelfConsistency(n=8),
                      backend=rz.backends.Local(), budget=rz.Budget(tokens=20_000))
"""

from pathlib import Path as _Path

# Installed, `reasoning.strategies` is the repository's strategies/ folder (pyproject's
# package-dir mapping). Run from a source checkout without installing (PYTHONPATH=., as on the
# GPU host), the checkout root joins this package's path so the same names resolve there.
_CHECKOUT = _Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "strategies" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))

from . import backends  # noqa: E402
from .budget import Budget, CallShape, Ledger, Usage
from .context import Context, Prefix, Problem, Sample, Sampling
from .errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailable,
    BadModel,
    BudgetExhausted,
    ConfigError,
    ReasoningError,
    UnsupportedRequest,
)
from .solve import Result, asolve, asolve_many, run_sync, solve, solve_many
from .strategy import Outcome, ProcessVerifier, Strategy, Verifier
from .trace import Trace, TraceNode
from .types import Capabilities, Completion, ConfidenceStop, GenerationRequest, GenerationResponse, Message

__version__ = "0.1.0"

# The common strategies and verifiers, as rz.SelfConsistency etc. Resolved on first use, so
# that importing the core imports no plugin (see ARCHITECTURE.md).
_REEXPORTED = {
    **dict.fromkeys(("BeamSearch", "BestOfN", "CertaintyProbe", "ComputeOptimal", "DVTS", "DeepConf", "ETS", "EarlyStopSC",
                     "GenRMBestOfN", "Greedy", "ParallelThinking", "PessimisticBestOfN", "Rebase", "SelfConsistency",
                     "SpawnJoin", "SummarizationLoop"), "reasoning.strategies"),
    **dict.fromkeys(("Confidence", "GenRM", "LLMJudge", "extract_answer", "grade", "is_equivalent", "run_code_tests"),
                    "reasoning.verifiers"),
}


def __getattr__(name: str):
    if name not in _REEXPORTED:
        raise AttributeError(f"module 'reasoning' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_REEXPORTED[name]), name)
    globals()[name] = value
    return value

__all__ = [
    "AuthenticationError", "BackendError", "BackendUnavailable", "BadModel", "Budget",
    "BudgetExhausted", "CallShape", "Capabilities", "Completion", "ConfidenceStop", "ConfigError", "Context",
    "GenerationRequest", "GenerationResponse", "Ledger", "Message", "Outcome", "Problem",
    "ReasoningError", "Result", "Sample", "Sampling", "Strategy", "Trace", "TraceNode", "Prefix", "ProcessVerifier",
    "UnsupportedRequest", "Usage", "Verifier", "asolve", "asolve_many", "backends", "run_sync",
    "solve", "solve_many", *_REEXPORTED,
]
