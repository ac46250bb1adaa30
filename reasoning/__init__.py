"""Test-time-compute reasoning: strategies over backends under enforced budgets.

    import reasoning as rz
    from strategies import SelfConsistency
    result = rz.solve("What is 17*23?", strategy=SelfConsistency(n=8),
                      backend=rz.backends.Local(), budget=rz.Budget(tokens=20_000))
"""

from . import backends
from .budget import Budget, CallShape, Ledger, Usage
from .context import Context, Problem, Sample, Sampling
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
from .strategy import Outcome, Strategy, Verifier
from .trace import Trace, TraceNode
from .types import Capabilities, Completion, GenerationRequest, GenerationResponse, Message

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError", "BackendError", "BackendUnavailable", "BadModel", "Budget",
    "BudgetExhausted", "CallShape", "Capabilities", "Completion", "ConfigError", "Context",
    "GenerationRequest", "GenerationResponse", "Ledger", "Message", "Outcome", "Problem",
    "ReasoningError", "Result", "Sample", "Sampling", "Strategy", "Trace", "TraceNode",
    "UnsupportedRequest", "Usage", "Verifier", "asolve", "asolve_many", "backends", "run_sync",
    "solve", "solve_many",
]
