"""The benchmarks run, and topic quality stays at its target (a regression guard, not a timing test)."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import corpus_path

ROOT = Path(__file__).resolve().parents[1]


def test_topic_quality_meets_its_targets():
    corpus_path("news_texts", "labels.jsonl")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "topic_quality.py"), "--quick"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["target_precision_at_least_0_95"] and figures["target_recall_at_least_0_95"], figures
