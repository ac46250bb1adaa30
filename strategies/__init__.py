"""Strategies: one file each, registered by name for the CLI and the server.

Adding one is writing a file here with a ``@register("name")`` class; nothing else changes.
"""

from .registry import available, create, get, register
from .greedy import Greedy
from .self_consistency import SelfConsistency
from .best_of_n import BestOfN
from .genrm_best_of_n import GenRMBestOfN
from .pessimistic_best_of_n import PessimisticBestOfN
from .parallel_thinking import ParallelThinking
from .summarization_loop import SummarizationLoop
from .early_stop_sc import EarlyStopSC
from .certainty_probe import CertaintyProbe
from .deepconf import DeepConf
from .spawn_join import SpawnJoin
from .compute_optimal import ComputeOptimal
from .beam_search import BeamSearch
from .dvts import DVTS
from .rebase import Rebase
from .ets import ETS

__all__ = [
    "BeamSearch", "BestOfN", "CertaintyProbe", "ComputeOptimal", "DVTS", "DeepConf", "ETS", "EarlyStopSC", "GenRMBestOfN", "Greedy", "ParallelThinking", "PessimisticBestOfN", "Rebase", "SelfConsistency",
    "SpawnJoin", "SummarizationLoop", "available", "create", "get", "register",
]
