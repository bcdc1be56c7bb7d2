"""The bundled public traces load with the counts their PROVENANCE.md states."""

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from concerto_lab.io.public_traces import (
    AZURE_2023,
    GENTD26,
    MOONCAKE,
    TRACES,
    read_azure_llm_2023,
    read_gentd26,
    read_mooncake_conversation,
)

SHA256 = {
    GENTD26: "263fb88f1095f62d360cf89ded8cfc24fa2c5d111c1b16e7aaa9ccbfc4b37d78",
    AZURE_2023 / "AzureLLMInferenceTrace_code.csv":
        "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
    AZURE_2023 / "AzureLLMInferenceTrace_conv.csv":
        "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
    MOONCAKE: "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df",
}  # fmt: skip


@pytest.mark.parametrize("path", list(SHA256), ids=lambda p: Path(p).name)
def test_bundled_files_are_the_documented_ones(path):
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == SHA256[path]
    assert (TRACES / "PROVENANCE.md").exists() and (TRACES.parent / "README.md").exists()


def test_gentd26():
    tr = read_gentd26()
    rep = tr.report
    assert (rep.lines_read, rep.rows_used, len(tr)) == (26823, 26798, 26798)
    assert len(rep.skipped) == 25 and {why for _, why in rep.skipped} == {"missing model"}
    assert len(tr.names) == 86 and set(tr.names) == {f"M{k:04d}" for k in range(86)}
    assert str(np.datetime64(int(tr.t_ms[0]), "ms")) == "2024-11-15T16:57:50.000"
    assert str(np.datetime64(int(tr.t_ms[-1]), "ms")) == "2024-12-08T17:33:57.000"
    counts = Counter(tr.model.tolist()).most_common()
    assert round(100 * counts[0][1] / len(tr), 1) == 30.7
    assert round(100 * sum(c for _, c in counts[:5]) / len(tr), 1) == 70.5
    assert int((np.diff(tr.model) != 0).sum()) == 20001  # PROVENANCE.md rounds it to "20,000"
    assert tr.line[0] == 2 and tr.line.max() == 26824  # file lines (header = 1)


def test_azure_llm_2023_two_services_one_trace():
    tr = read_azure_llm_2023()
    assert len(tr) == 28185 and tr.names == ("azure-code", "azure-conv")
    assert np.bincount(tr.model).tolist() == [8819, 19366]
    assert len(tr.report.files) == 2 and tr.report.skipped == []
    code = tr.t_ms[tr.model == 0]
    conv = tr.t_ms[tr.model == 1]
    as_text = lambda t: str(np.datetime64(int(t), "ms"))  # noqa: E731
    assert as_text(code[0]) == "2023-11-16T18:17:03.979"  # .9799600: 7 digits, truncated
    assert as_text(code[-1]) == "2023-11-16T19:14:19.928"
    assert as_text(conv[0]) == "2023-11-16T18:15:46.680"
    assert as_text(conv[-1]) == "2023-11-16T19:14:08.402"
    assert np.all(np.diff(tr.t_ms) >= 0)


def test_mooncake_conversation():
    tr = read_mooncake_conversation()
    assert len(tr) == 12031 and tr.names == ("mooncake-conv",)
    assert (int(tr.t_ms[0]), int(tr.t_ms[-1])) == (0, 3536999)
    assert len(np.unique(tr.t_ms)) == 1180
