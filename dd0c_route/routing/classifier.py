# Tests: tests/test_classifier.py; benchmark: bench/classifier.py
"""
The shipped complexity classifier: a deterministic heuristic.

It reads the last user message (and a little of the system prompt) for the
signals that separate a chat turn a small model handles from one that needs
a large one:

- size (estimated prompt tokens) and conversation depth (user turns);
- code: fenced blocks, code-shaped punctuation, programming vocabulary;
- math: LaTeX, operators next to digits, mathematical vocabulary;
- proofs and reasoning cues ("prove", "step by step", "trade-offs"...);
- multi-step instructions (numbered lines, "first... then... finally");
- extraction and transformation cues ("extract", "summarize", "as JSON"...);
- tool use.

Speed: only a bounded window of text is read word by word (the head and
tail of the last user message, where instructions sit); the rest costs only
``str.count`` calls, which run at memory speed.  A 4k-token prompt
classifies in tens of microseconds (``bench/classifier.py``).

Classes, cheapest first: ``simple`` (chit-chat, short questions),
``medium`` (extraction, rewriting, moderate size, tools, longer
conversations), ``complex`` (code, long documents, multi-step work, deep
conversations), ``reasoning`` (proofs, mathematics, explicit reasoning).
"""

from __future__ import annotations

from zope.interface import implementer

from .interfaces import Classification, IComplexityClassifier, RoutingRequest

__all__ = ["HeuristicClassifier"]

_HEAD = 1024
_TAIL = 256
_SYSTEM = 256

#: Punctuation turned into spaces before splitting into words (C speed).
_SPLIT = str.maketrans({c: " " for c in "!\"'(),.:;<>?[]{}`|~=*/\\\n\t\r-"})

_CODE_WORDS = frozenset(
    """
    python javascript typescript java golang rust c++ c# kotlin swift ruby php sql
    bash shell regex function functions method class compile compiler bug debug
    refactor implement implementation stacktrace traceback exception segfault api
    endpoint unittest pytest async await def const var struct enum lambda
    dockerfile kubernetes yaml json-schema algorithm recursion repository commit
    """.split()
)
_MATH_WORDS = frozenset(
    """
    integral integrate derivative differentiate equation equations matrix matrices
    eigenvalue eigenvalues polynomial probability expectation variance modulo
    prime primes irrational logarithm limit limits series converge converges
    convergence infinitely factorial combinatorics geometry triangle vector
    vectors calculus algebra solve
    """.split()
)
_PROOF_WORDS = frozenset("prove proof proofs theorem lemma corollary induction qed".split())
_REASONING_WORDS = frozenset(
    """
    why analyze analyse analysis compare contrast evaluate justify tradeoffs
    trade-offs tradeoff architecture design strategy reasoning implications
    critique
    """.split()
)
_EXTRACTION_WORDS = frozenset(
    """
    extract summarize summarise summary classify categorize translate rewrite
    paraphrase convert parse list tag label format reformat fill
    """.split()
)
_REASONING_PHRASES = ("step by step", "step-by-step", "think carefully", "pros and cons", "show your work", "chain of thought")
_STEP_PHRASES = ("\n1.", "\n2.", "\n3.", "\n4.", "\n- ", "\n* ")
_SEQUENCE_WORDS = frozenset({"first", "then", "finally", "next", "afterwards", "lastly"})
_LATEX = ("\\frac", "\\int", "\\sum", "\\sqrt", "\\lim", "\\prod", "$$", "\\begin{")


@implementer(IComplexityClassifier)
class HeuristicClassifier:
    """
    The default :class:`IComplexityClassifier`; thresholds are attributes so
    an operator (or a test) can tune them.
    """

    classes = ("simple", "medium", "complex", "reasoning")

    medium_tokens = 350
    complex_tokens = 6000
    medium_turns = 4
    complex_turns = 10

    def classify(self, request: RoutingRequest) -> Classification:
        features = request.features
        text = request.last_user_text
        if len(text) > _HEAD + _TAIL:
            window = text[:_HEAD] + "\n" + text[-_TAIL:]
        else:
            window = text
        if request.system_text:
            window = request.system_text[:_SYSTEM] + "\n" + window
        lowered = window.lower()
        words = set(lowered.translate(_SPLIT).split())

        first = text.find("```")
        fences = 0 if first < 0 else (2 if text.find("```", first + 3) >= 0 else 1)
        braces = lowered.count("{") + lowered.count(";") + lowered.count("=>") + lowered.count("()")
        code = (2 if fences >= 2 else 0) + len(words & _CODE_WORDS) + (1 if braces >= 6 else 0)
        latex = sum(1 for token in _LATEX if token in window) if ("\\" in window or "$" in window) else 0
        operators = 0
        if latex or words & _MATH_WORDS:
            operators = sum(lowered.count(op) for op in ("^", "=", "+"))
        math = 2 * latex + len(words & _MATH_WORDS) + (1 if operators >= 3 else 0)
        proof = len(words & _PROOF_WORDS)
        reasoning = len(words & _REASONING_WORDS) + sum(
            2 for phrase in _REASONING_PHRASES if phrase in lowered
        )
        steps = (sum(1 for marker in _STEP_PHRASES if marker in window) if "\n" in window else 0) + (
            1 if len(words & _SEQUENCE_WORDS) >= 2 else 0
        )
        extraction = len(words & _EXTRACTION_WORDS) + (1 if features.json_mode else 0)
        tokens = features.prompt_tokens
        turns = features.user_turns

        measured = (
            ("tokens", tokens), ("turns", turns), ("code", code), ("math", math),
            ("proof", proof), ("reasoning", reasoning), ("steps", steps),
            ("extraction", extraction), ("tools", int(features.tools)),
        )
        reasons: list[str] = []
        if proof:
            reasons.append("proof")
        if math >= 2:
            reasons.append("math")
        if reasons or (reasoning >= 3 and math):
            return Classification("reasoning", measured, tuple(reasons) or ("reasoning+math",))
        if code >= 2:
            reasons.append("code")
        if tokens >= self.complex_tokens:
            reasons.append("long")
        if steps >= 3:
            reasons.append("multi_step")
        if turns >= self.complex_turns:
            reasons.append("deep_conversation")
        if reasoning >= 3:
            reasons.append("reasoning")
        if reasons:
            return Classification("complex", measured, tuple(reasons))
        if tokens >= self.medium_tokens:
            reasons.append("size")
        if extraction:
            reasons.append("extraction")
        if code:
            reasons.append("code")
        if math:
            reasons.append("math")
        if reasoning >= 1 and tokens >= 40:
            reasons.append("reasoning")
        if steps:
            reasons.append("steps")
        if features.tools:
            reasons.append("tools")
        if turns >= self.medium_turns:
            reasons.append("conversation")
        if reasons:
            return Classification("medium", measured, tuple(reasons))
        return Classification("simple", measured, ())
