"""The real public request traces bundled in ``data/traces/`` (see its PROVENANCE.md).

* Alibaba GenTD26 (``read_gentd26``): 26,823 diffusion-model requests over 23 days naming 86
  anonymised models (``M0000``...); 25 rows without a model are counted as skipped. Its source
  grants use for research or study only (data/README.md).
* Azure LLM inference 2023 (``read_azure_llm_2023``): two services, code and conversation, one
  file each and no model column: each file becomes one model (``azure-code``, ``azure-conv``)
  and the two are merged into one trace.
* Mooncake conversation (``read_mooncake_conversation``): one service, times relative to the
  trace start (ms), placed at the Unix epoch.

Timestamps without a zone are taken as UTC. Every function takes a path that defaults to the
bundled copy and returns a ``Trace`` whose ``report`` accounts for every row.
"""

from __future__ import annotations

from pathlib import Path

from ..model.trace import Trace
from .request_table import merge_traces, read_request_table

TRACES = Path(__file__).resolve().parent.parent.parent / "data" / "traces"
GENTD26 = TRACES / "alibaba_gentd26" / "lora_request_trace.csv"
AZURE_2023 = TRACES / "azure_llm_2023"
MOONCAKE = TRACES / "mooncake_fast25" / "conversation_trace.jsonl"

AZURE_SERVICES = {"azure-code": "AzureLLMInferenceTrace_code.csv",
                  "azure-conv": "AzureLLMInferenceTrace_conv.csv"}  # fmt: skip


def _bundled(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the bundled traces ship in the repository's data/traces/ "
            "folder (install from a clone with `pip install -e .`), or pass a path"
        )
    return path


def read_gentd26(path: str | Path = GENTD26) -> Trace:
    """Alibaba GenTD26 (``gmt_create``, ``checkpoint_model_version_id``): 26,798 requests."""
    return read_request_table(_bundled(Path(path)), time="gmt_create",
                              model="checkpoint_model_version_id", fmt="csv")  # fmt: skip


def read_azure_llm_2023(folder: str | Path = AZURE_2023) -> Trace:
    """Azure LLM 2023 code + conversation services as one 2-model trace (28,185 requests).

    Equal timestamps keep the code service's requests first.
    """
    folder = _bundled(Path(folder))
    parts = [read_request_table(_bundled(folder / name), time="TIMESTAMP", model_name=model,
                                fmt="csv") for model, name in AZURE_SERVICES.items()]  # fmt: skip
    return merge_traces(parts, source=str(folder))


def read_mooncake_conversation(path: str | Path = MOONCAKE, *, model_name="mooncake-conv") -> Trace:
    """Mooncake (Kimi) conversation trace: 12,031 requests of one service, ms from the start."""
    return read_request_table(_bundled(Path(path)), time="timestamp", model_name=model_name,
                              unit="ms", fmt="ndjson")  # fmt: skip


__all__ = ["read_azure_llm_2023", "read_gentd26", "read_mooncake_conversation"]
