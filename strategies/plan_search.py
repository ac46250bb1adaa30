"""PlanSearch: search over natural-language plans, then write code (Wang et al. 2024).

After Wang et al. 2024, "Planning In Natural Language Improves LLM Search For Code
Generation" (arXiv 2409.03733; the authors' code: scaleapi/plansearch,
``ComboObservationModel``). Repeated sampling of code draws near-identical programs that
share their mistakes; PlanSearch samples *ideas* first and turns each into a program:

1. **First-order observations.** One call asks for ``observations`` useful, non-obvious
   observations about the problem (``prompts/plan_search_observations.md``); the numbered
   list ending the reply is read (``parse_list``).
2. **Observation sets.** Every subset of at most ``subset_size`` of them (the paper's S; 2 in
   its experiments), the empty set included: C(o,0) + C(o,1) + ... + C(o,S) sets
   (``subsets``), smallest first, in list order within a size.
3. **Second-order observations** (``second_order``). For each first-order set in that order,
   one call derives ``derived`` new observations from it (``plan_search_derive.md``); every
   non-empty subset of at most S of each derived list is one more observation set.
4. **Plans.** Each observation set becomes a natural-language solution sketch
   (``plan_search_sketch.md``). With ``fix_plans`` (the paper's step that doubles the plans)
   each sketch is also criticised as if it were wrong, with a counter-example
   (``plan_search_critique.md``), and rewritten to answer the criticism
   (``plan_search_fix.md``): a second plan, coded after the first.
5. **Code.** Each plan becomes pseudocode (``plan_search_pseudocode.md``; skipped with
   ``pseudocode=false``), then Python (``plan_search_code.md``), taken from the reply by the
   project's code extractor (``verifiers.code_extract.extract_code``): that program is the
   sample's answer whatever extractor the run set.
6. **Grading.** Each program runs against the problem's *public* tests in the code sandbox
   (``verifiers.code_exec``): ``public_tests`` reads them from ``problem.metadata["public_tests"]``
   when given, else from the problem text (``assert`` lines, as MBPP's prompt shows one, and
   ``>>> call`` / result pairs of a HumanEval docstring). Hidden tests are never read. A
   sample's score is 1.0 when it passes them, 0.0 when it does not (None: no public tests, or
   not run). The answer is the first program, in plan order, that passes; else the first
   program; this is the paper's "public test filtering" for pass@1.

pass@k. The programs are this strategy's samples. ``reasoning-bench run`` reports pass@k
over them with the unbiased estimator (``benchmarks.run.pass_at_k``): every observation,
sketch, criticism and pseudocode call sits in a trace span marked ``solutions=False``, so only
the code calls count as samples. A sweep treats the programs as a pool (``SampleReuse``) and
evaluates k-subsets of it, which is how the paper computes PlanSearch's pass@k over its
generated codes, although the programs are not independent draws; a point at k is charged k/N
of the pool's cost (the observation calls included), not what a run asked for k programs
would pay.

Where this differs from the paper and its code:
- an observation list is read from the numbered list of one reply; the authors' code spends
  three more calls per list (list the observations, filter to the most useful, format them as
  a Python list);
- the fix is two calls (criticism; rewritten sketch); the authors' code makes three
  (criticism, fix, merge the fix into the sketch);
- the authors shuffle the observation sets and code them all; here they are taken in the
  order above until ``n`` programs are written (each set gives one program, two with
  ``fix_plans``), so with a small ``n`` the shallow sets come first, and second-order
  observations are derived only from as many first-order sets as ``n`` needs;
- the empty set of a derived list is the empty set already planned, and is not planned again;
- one model writes ideas and code (the authors' code may use two).

Budget. Plans run ``parallel`` at a time, each as a chain (sketch, pseudocode, code, then the
fix and its code), so a budget that runs out mid-way leaves finished programs, not a heap of
sketches. Once any call is refused no new plan starts; the answer is chosen among the programs
written so far (none: no answer). ``Outcome.info``: ``observations`` (first-order),
``derived`` (per first-order set that was expanded), ``observation_sets``, ``plans``,
``programs``, ``public_tests``, ``passed_public`` (plan indices), ``chosen`` (index of the
chosen sample) and ``route`` (public-tests | first-program | none).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from dataclasses import dataclass

from pydantic import Field

from reasoning.context import Context, Problem, Sample
from reasoning.strategy import MaxTokens, Outcome, SampleReuse, Strategy, Temperature

from .registry import register

_ITEM = re.compile(r"^\s*(?:[-*•]|\(?\d+[.):])\s+(?:\*\*)?(?:observation\s*\d*\s*[:.-]\s*)?(?:\*\*)?\s*(.*\S)", re.IGNORECASE)


def parse_list(text: str, limit: int) -> list[str]:
    """The last ``limit`` items of the numbered (or bulleted) list lines in ``text``."""
    items = []
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match and match.group(1).strip("*: "):
            items.append(match.group(1).strip("* ").strip())
    return items[-limit:] if limit else []


def subsets(items: list[str], size: int, *, empty: bool = True) -> list[tuple[str, ...]]:
    """Every subset of at most ``size`` of ``items`` (the empty one when ``empty``): smallest
    first, in list order within a size."""
    start = 0 if empty else 1
    return [combo for k in range(start, min(size, len(items)) + 1) for combo in itertools.combinations(items, k)]


def public_tests(problem: Problem) -> list[str]:
    """The tests a solver may see: ``metadata["public_tests"]`` (a string or a list of them), else
    the problem text's ``assert`` lines and ``>>> call`` lines followed by their result. Lines
    that are not valid Python are dropped."""
    given = problem.metadata.get("public_tests")
    if given is not None:
        return [given] if isinstance(given, str) else [str(test) for test in given]
    found = []
    lines = problem.text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("assert "):
            found.append(stripped)
        elif stripped.startswith(">>> ") and i + 1 < len(lines):
            expected = lines[i + 1].strip()
            if expected and not expected.startswith(">>>"):
                found.append(f"assert {stripped[4:]} == {expected}")
    valid = []
    for test in found:
        try:
            compile(test, "<public test>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        valid.append(test)
    return valid


def shown(observations: tuple[str, ...] | list[str]) -> str:
    """Observations as the prompts show them."""
    if not observations:
        return "No observations are given: work from the problem statement itself."
    return "Here are correct observations that help to solve the problem:\n" + "\n".join(f"- {o}" for o in observations)


@dataclass
class _Run:
    """One problem's state (never kept on the strategy)."""

    refused: bool = False  # a call was refused: no new call, no new plan


@register("plan-search")
class PlanSearch(Strategy, SampleReuse):
    n: int = Field(16, ge=1, description="programs to write (one per plan; the pool pass@k is computed over)")
    observations: int = Field(4, ge=1, le=20, description="first-order observations asked for")
    subset_size: int = Field(2, ge=0, le=4, description="largest observation subset a plan is built from (the paper's S)")
    second_order: bool = Field(True, description="derive second-order observations from each first-order subset")
    derived: int = Field(2, ge=1, le=10, description="second-order observations asked for per subset")
    fix_plans: bool = Field(True, description="also criticise each sketch and code its fixed version (doubles the plans)")
    pseudocode: bool = Field(True, description="turn each plan into pseudocode before code")
    public_tests: bool = Field(True, description="grade programs on the problem's public tests and answer with one that passes")
    test_timeout: float = Field(10.0, gt=0, description="seconds per program against the public tests")
    parallel: int = Field(4, ge=1, description="plans worked on at once")
    idea_tokens: int = Field(512, ge=1, description="max tokens of an observation, sketch, criticism or pseudocode call")
    max_tokens: MaxTokens = None
    temperature: Temperature = None

    async def run(self, ctx: Context) -> Outcome:
        return self.choose(await self.draw(ctx, self.n))

    # -- SampleReuse -------------------------------------------------------------
    async def draw(self, ctx: Context, n: int) -> list[Sample]:
        """Up to ``n`` programs (fewer when the observation sets run out or the budget does),
        each scored on the public tests."""
        state = _Run()
        per_set = 2 if self.fix_plans else 1
        wanted = math.ceil(n / per_set)
        # shared: made once per problem whatever the number of programs (a sweep's pooled costs
        # charge these calls in full at every k, not k/N of them)
        async with ctx.span("observations", solutions=False, shared=True) as sub:
            reply = await self._say(sub, "observe", "plan_search_observations", state,
                                    problem=ctx.problem.text, count=str(self.observations))
            first = parse_list(reply or "", self.observations)
            sets = subsets(first, self.subset_size)
            derived: list[list[str]] = []
            if self.second_order and reply is not None and len(sets) < wanted:
                each = sum(math.comb(self.derived, k) for k in range(1, self.subset_size + 1))
                parents = sets[: min(len(sets), math.ceil((wanted - len(sets)) / max(1, each)))]
                replies = await asyncio.gather(*(
                    self._say(sub, f"derive-{i}", "plan_search_derive", state, problem=ctx.problem.text,
                              observations=shown(parent), count=str(self.derived))
                    for i, parent in enumerate(parents)))
                derived = [parse_list(r or "", self.derived) for r in replies]
                sets += [s for found in derived for s in subsets(found, self.subset_size, empty=False)]
        sets = sets[:wanted] if reply is not None else []
        jobs = [(i, fixed) for i in range(len(sets)) for fixed in ((False, True) if self.fix_plans else (False,))][:n]
        gate = asyncio.Semaphore(self.parallel)

        async def plan(index: int) -> list[Sample]:
            async with gate:
                if state.refused:
                    return []
                return await self._plan(ctx, index, sets[index], [f for i, f in jobs if i == index], state)

        found = await asyncio.gather(*(plan(i) for i in sorted({i for i, _ in jobs})))
        samples = [s for group in found for s in group]
        await self._grade(ctx, samples)
        if samples:
            samples[0].info["search"] = {"observations": first, "derived": derived,
                                         "observation_sets": len(sets), "plans": len(jobs)}
        return samples

    def choose(self, samples: list[Sample]) -> Outcome:
        search = next((s.info["search"] for s in samples if "search" in s.info), {})
        info = {**search, "programs": len(samples),
                "public_tests": next((s.info["public_tests"] for s in samples if "public_tests" in s.info), 0),
                "passed_public": [i for i, s in enumerate(samples) if s.score == 1.0]}
        passing = [i for i, s in enumerate(samples) if s.score == 1.0 and s.answer is not None]
        coded = [i for i, s in enumerate(samples) if s.answer is not None]
        if passing:
            chosen, route = passing[0], "public-tests"
        elif coded:
            chosen, route = coded[0], "first-program"
        else:
            return Outcome(None, None, samples, {**info, "route": "none"})
        best = samples[chosen]
        return Outcome(best.answer, best.text, samples, {**info, "route": route, "chosen": chosen})

    # -- one plan ----------------------------------------------------------------
    async def _plan(self, ctx: Context, index: int, observations: tuple[str, ...], kinds: list[bool],
                    state: _Run) -> list[Sample]:
        """The sketch of one observation set and its program; with a fix, the fixed sketch's too."""
        problem = ctx.problem.text
        programs: list[Sample] = []
        async with ctx.span(f"plan-{index}", observations=list(observations)) as plan, \
                plan.span("ideas", solutions=False) as ideas:
            sketch = await self._say(ideas, "sketch", "plan_search_sketch", state, problem=problem,
                                     observations=shown(observations))
            if sketch is None:
                return []
            for fixed in kinds:
                if fixed:
                    criticism = await self._say(ideas, "critique", "plan_search_critique", state,
                                                problem=problem, sketch=sketch)
                    if criticism is None:
                        break
                    sketch = await self._say(ideas, "fix", "plan_search_fix", state, problem=problem,
                                             sketch=sketch, criticism=criticism)
                    if sketch is None:
                        break
                program = await self._implement(plan, ideas, sketch, state)
                if program is None:
                    break
                program.info.update(plan=index, fixed=fixed, observations=list(observations))
                programs.append(program)
        return programs

    async def _implement(self, plan: Context, ideas: Context, sketch: str, state: _Run) -> Sample | None:
        from reasoning.prompts import load_prompt
        from reasoning.verifiers.code_extract import extract_code

        steps = sketch
        if self.pseudocode:
            steps = await self._say(ideas, "pseudocode", "plan_search_pseudocode", state,
                                    problem=plan.problem.text, sketch=sketch)
            if steps is None:
                return None
        made = await plan.generate(load_prompt("plan_search_code").render(problem=plan.problem.text, plan=steps),
                                   name="code", max_tokens=self.max_tokens, temperature=self.temperature)
        if not made:
            state.refused = True
            return None
        program = made[0]
        program.answer = extract_code(program.text, plan.problem.metadata.get("entry_point"))
        program.info.pop("vote_key", None)  # the run's vote key read the text with another extractor
        return program

    async def _say(self, ctx: Context, name: str, prompt: str, state: _Run, **values: str) -> str | None:
        """One idea call's text (None when the budget refused it)."""
        from reasoning.prompts import load_prompt

        if state.refused:
            return None
        said = await ctx.generate(load_prompt(prompt).render(**values), name=name, max_tokens=self.idea_tokens,
                                  temperature=self.temperature)
        if not said:
            state.refused = True
            return None
        return said[0].text

    # -- grading -----------------------------------------------------------------
    async def _grade(self, ctx: Context, samples: list[Sample]) -> None:
        """Score each program on the public tests in the sandbox (1.0 passes, 0.0 fails)."""
        tests = public_tests(ctx.problem) if self.public_tests else []
        for sample in samples:
            sample.info["public_tests"] = len(tests)
        if not tests:
            return
        from reasoning.verifiers.code_exec import arun_code_tests
        from reasoning.verifiers.code_extract import assemble_humaneval, defined_functions

        meta = ctx.problem.metadata
        entry = meta.get("entry_point")

        async def grade(sample: Sample) -> None:
            if sample.answer is None:
                sample.score = 0.0
                return
            program = sample.answer
            if meta.get("format") == "humaneval" and entry and isinstance(meta.get("prompt"), str):
                program = assemble_humaneval(meta["prompt"], sample.answer, entry)
            verdict = await arun_code_tests(program, "\n".join(tests), None, timeout=self.test_timeout,
                                            subjects=defined_functions(program))
            sample.score = 1.0 if verdict.passed else 0.0
            sample.info["public_status"] = verdict.status

        await asyncio.gather(*(grade(s) for s in samples))
