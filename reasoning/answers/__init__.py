"""The one answer extractor every strategy, verifier and grader uses: the final answer of a
solution text (``\\boxed{}``, "the answer is", last number), normalised. Part of the core, since
``Sample.answer`` is; equivalence checking (sympy, math-verify) stays in ``reasoning.verifiers``."""

from .extract import extract_answer
from .latex_utils import last_boxed, strip_answer_wrappers
from .normalize import normalize_answer

__all__ = ["extract_answer", "last_boxed", "normalize_answer", "strip_answer_wrappers"]
