"""Test helper: a realistic file of someone else's scored generations (as public repeated-sampling
releases ship them), to import with ``dars import``.

``write_generations(path)`` writes a CSV with the publisher's own column names: ``subject`` (the
dataset, with a ``/`` in it), ``question_id``, ``question``, ``answer`` (the gold), ``model_name``
(one with ``[`` ``]``), ``sample`` (the decode index), ``correct`` (0/1), ``prompt_tokens``,
``completion_tokens`` and ``split``. Every (question, model) pair has between 5 and 10 decodes;
two models miss some questions. Scores are seeded draws from a per-(question, model) accuracy,
so models differ by question and routing has something to learn.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

MODELS = ("gpt-4o[json-schema]", "llama-3.1-8b", "qwen2.5-7b", "mistral-7b")
SUBJECTS = ("college_mathematics/few", "logical_deduction")


def generation_rows(n_questions: int = 24, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for subject in SUBJECTS:
        for q in range(n_questions):
            qid = f"{subject.split('/')[0][:4]}-{q:03d}"
            split = "test" if q % 4 == 3 else "train"
            difficulty = rng.normal()
            for m, model in enumerate(MODELS):
                # Two models miss some questions: mistral every 7th, qwen every 11th.
                if (model == "mistral-7b" and q % 7 == 5) or (
                    model == "qwen2.5-7b" and q % 11 == 6
                ):
                    continue
                ability = [1.2, -0.3, 0.4, -0.8][m] + 0.8 * rng.normal()
                p = 1 / (1 + np.exp(-(ability - difficulty)))
                for k in range(int(rng.integers(5, 11))):
                    rows.append(
                        {
                            "subject": subject,
                            "question_id": qid,
                            "question": f"Question {q} of {subject}: what follows from {q}?",
                            "answer": str(q % 5),
                            "model_name": model,
                            "sample": k,
                            "correct": int(rng.random() < p),
                            "prompt_tokens": 60 + q,
                            "completion_tokens": int(40 + 30 * m + rng.integers(0, 20)),
                            "split": split,
                        }
                    )
    return rows


def write_generations(path: str | Path, n_questions: int = 24, seed: int = 0) -> Path:
    """Write :func:`generation_rows` as CSV at ``path``; returns it."""
    path = Path(path)
    rows = generation_rows(n_questions, seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
