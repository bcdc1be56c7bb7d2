"""Every public oracle scenario: identical decisions, eviction order, reasons and final state."""

import json

from conftest import oracle_names

from concerto_lab import reference
from concerto_lab.analysis.result import reason_text
from concerto_lab.io.scenario import load_scenario
from concerto_lab.model.dtypes import REJECT_NO_FIT, REJECT_PINNED, REJECT_UNKNOWN
from concerto_lab.replay import replay

_KIND = {"unknown": REJECT_UNKNOWN, "pinned": REJECT_PINNED, "no_fit": REJECT_NO_FIT}


def test_public_set_is_complete():
    assert len(oracle_names()) == 49


def test_kernel_matches_oracle(oracle_case):
    sc = load_scenario(oracle_case["scenario"])
    result = replay(sc.trace, sc.config, sc.gpus, events=sc.events, warn=False)
    got = result.oracle_lines()
    want = oracle_case["expected"]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w, f"{oracle_case['name']} request {w['i']}"
    assert result.final_state() == oracle_case["final_state"]["gpus"]


def test_reference_matches_oracle(oracle_case):
    raw = json.loads(oracle_case["scenario"].read_text())
    vram = {m["id"]: m["vram_required_bytes"] for m in raw["models"]}
    decisions, router = reference.run_scenario(raw)
    for d, w in zip(decisions, oracle_case["expected"], strict=True):
        assert (d.decision, d.gpu, list(d.evict)) == (w["decision"], w["gpu"], w["evict"])
        kind = _KIND.get(d.reject_kind)
        assert reason_text(kind, w["model"], vram.get(w["model"], 0)) == w["reason"]
    assert router.state() == oracle_case["final_state"]["gpus"]
