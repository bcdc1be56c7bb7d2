"""Start-up GPU state from what operators have: nvidia-smi CSV, NVML, Concerto's /status."""

import json
import sys
import types
import warnings

import pytest

from concerto_lab.io.config import parse_config
from concerto_lab.io.startup import (
    MIB,
    StartupError,
    classify_health,
    read_nvidia_smi_csv,
    read_nvml,
    read_status,
)
from concerto_lab.present.cli import main

START_1 = """\
index, name, memory.total [MiB], memory.used [MiB], temperature.gpu, ecc.errors.uncorrected.volatile.total
0, NVIDIA RTX A5000, 24564 MiB, 318 MiB, 34, 0
1, NVIDIA RTX A5000, 24564 MiB, 262 MiB, 36, 0
2, NVIDIA RTX A6000, 49140 MiB, 447 MiB, 39, 0
"""
# The production README's figures: (total - used) MiB x 1,048,576.
AVAILABLE_1 = [25_423_773_696, 25_482_493_952, 51_058_311_168]


def _cfg(extra: str = "") -> object:
    return parse_config(
        '[routing]\nmax_healthy_temperature = 75\nmax_degraded_temperature = 85\n' + extra
        + '[[models]]\nid = "a"\nvram_required = "8GB"\n',
        source="t.toml",
    )


def test_csv_with_units_gives_exact_available_bytes(tmp_path):
    p = tmp_path / "start1.csv"
    p.write_text(START_1)
    gpus = read_nvidia_smi_csv(p)
    assert [g.available for g in gpus] == AVAILABLE_1
    assert [g.used for g in gpus] == [318 * MIB, 262 * MIB, 447 * MIB]
    assert [g.total for g in gpus] == [24564 * MIB, 24564 * MIB, 49140 * MIB]
    assert [g.name for g in gpus] == ["NVIDIA RTX A5000"] * 2 + ["NVIDIA RTX A6000"]
    assert {g.health for g in gpus} == {"Healthy"}


def test_csv_nounits_and_noheader_read_the_same():
    nounits = START_1.replace(" MiB,", ",")
    assert "MiB," not in nounits.splitlines()[1]
    noheader = "".join(START_1.splitlines(keepends=True)[1:])
    noheader_nounits = "".join(nounits.splitlines(keepends=True)[1:])
    for text in (nounits, noheader, noheader_nounits):
        assert [g.available for g in read_nvidia_smi_csv(text)] == AVAILABLE_1


def test_csv_noheader_with_other_columns_and_rows_out_of_order():
    text = "2, 49140, 447, 78\n0, 24564, 318, 58\n"
    gpus = read_nvidia_smi_csv(
        text, columns=["index", "memory.total", "memory.used", "temperature.gpu"]
    )
    assert [g.available for g in gpus] == [(24564 - 318) * MIB, (49140 - 447) * MIB]
    assert [g.health for g in gpus] == ["Healthy", "Degraded"]


def test_csv_second_start_gpu2_degraded_by_config_thresholds():
    start2 = START_1.replace(", 34, 0", ", 58, 0").replace(", 39, 0", ", 78, 0")
    assert [g.health for g in read_nvidia_smi_csv(start2, _cfg())] == [
        "Healthy", "Healthy", "Degraded"]  # fmt: skip
    # A hotter threshold from concerto.toml keeps it Healthy.
    hot = parse_config('[routing]\nmax_healthy_temperature = 80\n', source="h.toml")
    assert read_nvidia_smi_csv(start2, hot)[2].health == "Healthy"


def test_csv_ecc_not_available_is_not_an_error_but_a_count_is_unhealthy():
    text = START_1.replace("36, 0", "36, [N/A]").replace("39, 0", "39, 2")
    assert [g.health for g in read_nvidia_smi_csv(text)] == ["Healthy", "Healthy", "Unhealthy"]


def test_csv_selects_configured_gpu_ids_in_config_order():
    cfg = _cfg('[[gpus]]\nid = 2\n[[gpus]]\nid = 0\n')
    gpus = read_nvidia_smi_csv(START_1, cfg)
    assert [g.available for g in gpus] == [AVAILABLE_1[2], AVAILABLE_1[0]]
    with pytest.raises(StartupError, match=r"\[7\]"):
        read_nvidia_smi_csv(START_1, _cfg("[[gpus]]\nid = 7\n"))


@pytest.mark.parametrize(
    "text, match",
    [
        (START_1.replace("262 MiB", "lots"), r":3: memory.used: cannot read memory 'lots'"),
        (START_1.replace("1, NVIDIA", "x, NVIDIA"), r":3: index: expected an integer"),
        (START_1.replace("318 MiB, ", ""), r":2: 5 fields, the header has 6"),
        ("index, name\n0, A\n", r"memory.total, memory.used missing"),
    ],
)
def test_csv_errors_name_line_and_field(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(StartupError, match=match) as e:
        read_nvidia_smi_csv(p)
    assert "bad.csv" in str(e.value)


@pytest.mark.parametrize(
    "temp, ecc, health",
    [
        (75, 0, "Healthy"),  # exactly max_healthy: still Healthy (strict >)
        (75.5, 0, "Degraded"),
        (76, 0, "Degraded"),
        (85, 0, "Degraded"),  # exactly max_degraded: still Degraded
        (86, 0, "Unhealthy"),
        (20, 1, "Unhealthy"),  # any uncorrected ECC error
        (None, None, "Healthy"),  # no sensor, no ECC support
        (90, None, "Unhealthy"),
    ],
)
def test_health_classification_edges(temp, ecc, health):
    assert classify_health(temp, ecc, 75, 85) == health


def test_health_edges_through_csv_with_default_thresholds():
    rows = "".join(f"{k}, G, 1000 MiB, 0 MiB, {t}, 0\n" for k, t in enumerate([75, 76, 85, 86]))
    gpus = read_nvidia_smi_csv(START_1.splitlines()[0] + "\n" + rows)
    assert [g.health for g in gpus] == ["Healthy", "Degraded", "Degraded", "Unhealthy"]


def test_nvml_without_a_driver_is_a_clear_error_not_a_crash():
    """This machine has no NVIDIA driver: the real pynvml call must fail cleanly."""
    pytest.importorskip("pynvml")
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:  # pragma: no cover - only on a GPU machine
        pynvml.nvmlShutdown()
        pytest.skip("a driver is present here")
    with pytest.raises(StartupError) as e:
        read_nvml()
    text = str(e.value)
    assert "NVML is not available" in text and "--gpus-csv" in text and "nvidia-smi" in text


def test_nvml_cli_without_driver_exits_2_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[models]]\nid = "a"\nvram_required = "1GB"\n')
    log = tmp_path / "x.jsonl"
    log.write_text("")
    code = main(["verify", str(log), "--config", str(cfg), "--nvml"])
    err = capsys.readouterr().err
    assert code == 2
    assert "NVML is not available" in err and "Traceback" not in err


def test_nvml_snapshot_through_a_stand_in_module(monkeypatch):
    """The success path, with a stand-in for pynvml (exact bytes, aggregate ECC)."""

    class NVMLError(Exception):
        pass

    mem = types.SimpleNamespace
    devices = [
        ("NVIDIA A100", mem(total=80 * 2**30, used=500 * MIB), 40, 0),
        ("NVIDIA A100", mem(total=80 * 2**30, used=0), 80, 0),
        ("NVIDIA A100", mem(total=80 * 2**30, used=0), 30, 3),
    ]
    fake = types.SimpleNamespace(
        NVMLError=NVMLError,
        NVML_TEMPERATURE_GPU=0,
        NVML_MEMORY_ERROR_TYPE_UNCORRECTED=1,
        NVML_AGGREGATE_ECC=1,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda k: k,
        nvmlDeviceGetName=lambda h: devices[h][0].encode(),
        nvmlDeviceGetMemoryInfo=lambda h: devices[h][1],
        nvmlDeviceGetTemperature=lambda h, kind: devices[h][2],
        nvmlDeviceGetTotalEccErrors=lambda h, err, counter: devices[h][3],
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = read_nvml(_cfg())
    assert [g.available for g in gpus] == [80 * 2**30 - 500 * MIB, 80 * 2**30, 80 * 2**30]
    assert [g.health for g in gpus] == ["Healthy", "Degraded", "Unhealthy"]
    assert gpus[0].name == "NVIDIA A100"


STATUS = {
    "gpus": [
        {"id": "gpu:0", "name": "NVIDIA RTX A5000", "health": "Healthy",
         "memory_total": "24.0 GiB", "memory_used": "318.0 MiB", "loaded_models": []},
        {"id": 1, "health": "Degraded", "memory_total_bytes": 24564 * MIB,
         "memory_available_bytes": (24564 - 409) * MIB, "temperature": 30},
    ]
}  # fmt: skip


def test_status_json_rounded_sizes_warn_and_health_is_concertos(tmp_path):
    p = tmp_path / "status.json"
    p.write_text(json.dumps(STATUS))
    with pytest.warns(UserWarning, match="rounded"):
        gpus = read_status(p)
    assert gpus[0].total == 24 * 2**30 and gpus[0].used == 318 * MIB
    # Exact bytes for GPU 1; health as Concerto reported it, not re-derived from today's 30 °C.
    assert gpus[1].available == (24564 - 409) * MIB
    assert [g.health for g in gpus] == ["Healthy", "Degraded"]


def test_status_exact_bytes_do_not_warn_and_loaded_models_are_taken_out():
    cfg = _cfg()  # model "a" is 8 GB
    doc = {"gpus": [{"index": 0, "memory_total_bytes": 24_000_000_000,
                     "memory_used_bytes": 8_300_000_000, "temperature": 80,
                     "loaded_models": [{"model": "a"}]}]}  # fmt: skip
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        (gpu,) = read_status(doc, cfg)
    assert gpu.used == 300_000_000  # foreign usage only
    assert gpu.health == "Degraded"  # no health field: classified from temperature
    assert not any("rounded" in str(x.message) for x in w)
    assert any("loaded" in str(x.message) for x in w)


def test_status_errors_name_the_field(tmp_path):
    with pytest.raises(StartupError, match=r"gpus\[0\]: memory_total"):
        read_status({"gpus": [{"id": 0, "memory_used": "1 GiB"}]})
    with pytest.raises(StartupError, match="health: unknown value"):
        read_status({"gpus": [{"memory_total_bytes": 10, "memory_used_bytes": 0, "health": "ok"}]})
    p = tmp_path / "s.json"
    p.write_text("{nope")
    with pytest.raises(StartupError, match=r"s.json:1: not valid JSON"):
        read_status(p)
