import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests: a bounded, derandomized run so CI is deterministic. HYPOTHESIS_PROFILE=dev
# explores more (random seeds, more examples) when hunting bugs locally.
settings.register_profile(
    "ci", max_examples=60, derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
settings.register_profile("dev", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
