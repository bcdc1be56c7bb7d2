import json
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ORACLE = TESTS / "oracle"
REPO = TESTS.parent


def oracle_names() -> list[str]:
    return sorted(p.name[: -len(".expected.jsonl")] for p in ORACLE.glob("*.expected.jsonl"))


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(params=oracle_names())
def oracle_case(request):
    name = request.param
    return {
        "name": name,
        "scenario": ORACLE / f"{name}.json",
        "expected": read_jsonl(ORACLE / f"{name}.expected.jsonl"),
        "final_state": json.loads((ORACLE / f"{name}.final_state.json").read_text()),
    }
