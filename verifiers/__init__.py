"""Answer extraction and math equivalence checking shared by every strategy."""

from reasoning.verifiers.code_exec import CodeVerdict, arun_code_tests, run_code_tests
from reasoning.verifiers.code_extract import assemble_humaneval, extract_code
from reasoning.verifiers.expression import ExpressionVerdict, check_expression, normalize_expression
from reasoning.answers.extract import extract_answer
from reasoning.verifiers.genrm import GenRM, parse_verdict
from reasoning.verifiers.grading import agrade, grade, grade_many
from reasoning.answers.latex_utils import strip_answer_wrappers
from reasoning.verifiers.math_equiv import ais_equivalent, is_equivalent, is_equivalent_many
from reasoning.answers.normalize import normalize_answer
from reasoning.verifiers.pessimistic import Pessimistic, wilson_lower_bound
from reasoning.verifiers.process import (
    LLMProcessReward,
    RewardModelPRM,
    TokenClassificationPRM,
    aggregate_steps,
    split_steps,
)
from reasoning.registry import VERIFIERS
from reasoning.verifiers.scorers import Confidence, LLMJudge, make_verifier, parse_grade

__all__ = [
    "CodeVerdict",
    "arun_code_tests",
    "assemble_humaneval",
    "extract_code",
    "run_code_tests",
    "VERIFIERS",
    "Confidence",
    "ExpressionVerdict",
    "GenRM",
    "LLMJudge",
    "LLMProcessReward",
    "Pessimistic",
    "RewardModelPRM",
    "TokenClassificationPRM",
    "aggregate_steps",
    "check_expression",
    "agrade",
    "ais_equivalent",
    "extract_answer",
    "grade",
    "grade_many",
    "is_equivalent",
    "is_equivalent_many",
    "make_verifier",
    "normalize_expression",
    "normalize_answer",
    "parse_grade",
    "parse_verdict",
    "split_steps",
    "strip_answer_wrappers",
    "wilson_lower_bound",
]
