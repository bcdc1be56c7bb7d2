"""Routing bug cases (``tests/cases/bug_cases.yaml``): exact decisions, reject kinds and final
state, through the kernel and through the reference. Each case stands for a fault class; the
random tests (``test_kernel_vs_reference``, ``test_invariants``) cover the rest of each class.
"""

import copy

import pytest
import yaml
from case_loader import CASES_FILE, case_from_block, expected_tuple, load_cases
from twins import kernel_run, reference_run

from concerto_lab.model.sizes import SizeError, parse_size

CASES = load_cases()


def test_every_routing_case_is_here():
    ids = sorted({c.id for c in CASES})
    assert ids == ["B01", "B02", "B03", "B04", "B09", "B09-fraction", "B10", "B11", "B13"]
    assert sorted(c.policy for c in CASES if c.id == "B04") == ["lfu", "lru"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.id}-{c.policy}")
def test_case(case):
    decisions, final = kernel_run(case.scenario)
    requests = [e for e in case.scenario["events"] if e["kind"] == "request"]
    for i, (want, req, got) in enumerate(zip(case.expected, requests, decisions, strict=True)):
        assert want["t"] == req["t_ms"], f"{case.id}: expected[{i}] is out of step with events"
        assert got == expected_tuple(want), f"{case.id} request {i} at t={want['t']}"
    assert reference_run(case.scenario) == (decisions, final)

    for k, want in case.final["gpus"].items():
        gpu = final[k]
        if "residents" in want:
            assert [e["model"] for e in gpu["loaded_models"]] == want["residents"]
        if "available" in want:
            assert gpu["memory_available_bytes"] == want["available"]
        if "used" in want:
            assert gpu["memory_used_bytes"] == want["used"]
    for model, want in case.final["models"].items():
        entry = next(e for g in final for e in g["loaded_models"] if e["model"] == model)
        if "request_count" in want:
            assert entry["request_count"] == want["request_count"], model
        if "last_used" in want:
            assert entry["last_request_t_ms"] == want["last_used"], model


def _doc():
    return yaml.safe_load(CASES_FILE.read_text())


@pytest.mark.parametrize("text,expected", _doc()["sizes"].items())
def test_b09_size_table(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", _doc()["bad_sizes"])
def test_b09_bad_size_names_file_model_and_field(bad):
    block = copy.deepcopy(next(b for b in _doc()["cases"] if b["id"] == "B09"))
    block["models"][0]["vram_required"] = bad
    with pytest.raises(SizeError) as err:
        case_from_block(block, "lru", source=str(CASES_FILE))
    text = str(err.value)
    for part in (str(CASES_FILE), "B09", "'m_bin'", "vram_required", repr(bad)):
        assert part in text, text


def test_yaml_bare_words_are_not_taken_as_ids():
    block = copy.deepcopy(next(b for b in _doc()["cases"] if b["id"] == "B02"))
    block["models"][0]["id"] = False  # what YAML makes of an unquoted `no`
    with pytest.raises(ValueError, match="must be a quoted string"):
        case_from_block(block, "lru")
