"""Answer extraction and math equivalence checking shared by every strategy."""

from verifiers.extract import extract_answer
from verifiers.latex_utils import strip_answer_wrappers
from verifiers.math_equiv import ais_equivalent, is_equivalent, is_equivalent_many
from verifiers.normalize import normalize_answer
from verifiers.scorers import VERIFIERS, Confidence, LLMJudge, make_verifier, parse_grade

__all__ = [
    "VERIFIERS",
    "Confidence",
    "LLMJudge",
    "ais_equivalent",
    "extract_answer",
    "is_equivalent",
    "is_equivalent_many",
    "make_verifier",
    "normalize_answer",
    "parse_grade",
    "strip_answer_wrappers",
]
