"""The GPUs Concerto saw when it started: nvidia-smi CSV, a live NVML snapshot, or ``/status``.

Concerto 0.1 reads one NVML snapshot per GPU at start-up: ``available = total - used`` (memory of
other processes counts against it) and health is classified once, from temperature and the
uncorrected-ECC counter, with the ``[routing]`` thresholds of ``concerto.toml``. Health never
changes while it runs. Every reader here returns the same thing, a tuple of
``Gpu(total, used=foreign, health, name)`` in the order Concerto uses them (the config's
``[[gpus]]`` ids when it lists any, else device index order).
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..model.cluster import ConfigError, Gpu, RoutingConfig
from ..model.sizes import SizeError, parse_size

MIB = 1_048_576

#: The query the README asks operators to run, in this column order.
NVIDIA_SMI_QUERY = (
    "index", "name", "memory.total", "memory.used", "temperature.gpu",
    "ecc.errors.uncorrected.volatile.total",
)  # fmt: skip
NVIDIA_SMI_COMMAND = (
    "nvidia-smi --query-gpu=" + ",".join(NVIDIA_SMI_QUERY) + " --format=csv"
)

_UNIT_BYTES = {"b": 1, "kib": 1024, "mib": MIB, "gib": 1024 * MIB, "tib": 1024 * 1024 * MIB}
_NOT_AVAILABLE = {"[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]", ""}


class StartupError(ConfigError):
    """A start-up snapshot that cannot be read; the text names the source, line and field."""


@dataclass(frozen=True)
class GpuReading:
    """One GPU as a snapshot shows it, before classification."""

    index: int
    name: str
    total: int  # bytes
    used: int  # bytes in use by other processes (foreign usage at start-up)
    temperature: float | None = None
    ecc_uncorrected: int | None = None
    health: str | None = None  # only when the source states Concerto's own classification


def classify_health(
    temperature: float | None,
    ecc_uncorrected: int | None,
    max_healthy: float = 75.0,
    max_degraded: float = 85.0,
) -> str:
    """Concerto 0.1's start-up rule: hot or any uncorrected ECC error -> Unhealthy.

    Temperature above ``max_degraded`` or ECC > 0 is Unhealthy, above ``max_healthy`` Degraded,
    else Healthy. Both comparisons are strict: exactly 75 °C is still Healthy. An unreadable
    sensor counts as nothing to report (Concerto treats a failed read the same way).
    """
    if ecc_uncorrected is not None and ecc_uncorrected > 0:
        return "Unhealthy"
    if temperature is None:
        return "Healthy"
    if temperature > max_degraded:
        return "Unhealthy"
    if temperature > max_healthy:
        return "Degraded"
    return "Healthy"


def gpus_from_readings(
    readings: Iterable[GpuReading], config: RoutingConfig | None = None, source: str = "snapshot"
) -> tuple[Gpu, ...]:
    """Classify and order readings: the config's ``[[gpus]]`` ids if it has any, else by index."""
    rows = sorted(readings, key=lambda r: r.index)
    by_index = {}
    for r in rows:
        if r.index in by_index:
            raise StartupError(f"{source}: GPU index {r.index} appears twice")
        by_index[r.index] = r
    if not rows:
        raise StartupError(f"{source}: no GPU rows")
    hot, bad = (75.0, 85.0) if config is None else (
        config.max_healthy_temperature, config.max_degraded_temperature)  # fmt: skip
    if config is not None and config.gpu_ids:
        missing = [g for g in config.gpu_ids if g not in by_index]
        if missing:
            raise StartupError(
                f"{source}: GPU id(s) {missing} from [[gpus]] of {config.source or 'the config'} "
                f"are not in the snapshot (it has {sorted(by_index)})"
            )
        rows = [by_index[g] for g in config.gpu_ids]
    out = []
    for r in rows:
        if not 0 <= r.used <= r.total:
            raise StartupError(
                f"{source}: GPU {r.index}: memory used ({r.used} bytes) is not within 0..total "
                f"({r.total} bytes)"
            )
        health = r.health or classify_health(r.temperature, r.ecc_uncorrected, hot, bad)
        out.append(Gpu(total=r.total, used=r.used, health=health, name=r.name))
    return tuple(out)


# --- nvidia-smi CSV ------------------------------------------------------------------------------
_HEADER_UNIT = re.compile(r"^(?P<key>[A-Za-z0-9_.]+)\s*(\[(?P<unit>[^\]]*)\])?$")


def read_nvidia_smi_csv(
    source: str | Path,
    config: RoutingConfig | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> tuple[Gpu, ...]:
    """GPUs from the output of ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]``.

    ``source`` is a path, or the CSV text itself when it contains a newline. With ``noheader``
    pass ``columns`` (the ``--query-gpu`` list; default ``NVIDIA_SMI_QUERY``). Memory without a
    unit is MiB, as nvidia-smi prints it; ``[N/A]`` temperature or ECC (cards without ECC) means
    nothing to report.
    """
    return gpus_from_readings(
        nvidia_smi_readings(source, columns=columns), config, source=_label(source)
    )


def _label(source) -> str:
    return "nvidia-smi CSV" if isinstance(source, str) and "\n" in source else str(source)


def nvidia_smi_readings(
    source: str | Path, *, columns: Sequence[str] | None = None
) -> list[GpuReading]:
    label = _label(source)
    if isinstance(source, str) and "\n" in source:
        text = source
    else:
        try:
            text = Path(source).read_text(encoding="utf-8-sig")
        except OSError as e:
            raise StartupError(f"{label}: cannot read nvidia-smi CSV: {e.strerror or e}") from None
    rows = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), 1)
            if any(c.strip() for c in row)]  # fmt: skip
    if not rows:
        raise StartupError(f"{label}: empty nvidia-smi CSV")
    first = [c.strip() for c in rows[0][1]]
    has_header = not first[0].lstrip("-").isdigit()
    if has_header:
        header = first
        rows = rows[1:]
    else:
        header = list(columns or NVIDIA_SMI_QUERY)
    keys, header_units = [], []
    for h in header:
        m = _HEADER_UNIT.match(h.strip())
        if not m:
            raise StartupError(f"{label}:1: cannot read column name {h!r}")
        keys.append(m.group("key").lower())
        header_units.append((m.group("unit") or "").strip().lower())
    need = ["index", "memory.total", "memory.used"]
    missing = [k for k in need if k not in keys]
    if missing:
        raise StartupError(
            f"{label}: column(s) {', '.join(missing)} missing (have {', '.join(keys)}); run "
            f"`{NVIDIA_SMI_COMMAND}`" + ("" if has_header else " or pass the columns of a noheader CSV")
        )
    if "temperature.gpu" not in keys:
        warnings.warn(f"{label}: no temperature.gpu column: health cannot be classified from heat",
                      stacklevel=3)  # fmt: skip
    ecc_key = next((k for k in keys if k.startswith("ecc.errors.uncorrected")), None)
    col = {k: j for j, k in enumerate(keys)}
    out = []
    for n, row in rows:
        cells = [c.strip() for c in row]
        if len(cells) != len(keys):
            raise StartupError(f"{label}:{n}: {len(cells)} fields, the header has {len(keys)}")

        def field(key):
            return cells[col[key]]

        def integer(key):
            v = field(key)
            try:
                return int(v)
            except ValueError:
                raise StartupError(f"{label}:{n}: {key}: expected an integer, got {v!r}") from None

        def optional_number(key):
            if key is None or key not in col:
                return None
            v = field(key)
            if v.lower() in _NOT_AVAILABLE:
                return None
            try:
                return float(v.split()[0])
            except ValueError:
                raise StartupError(f"{label}:{n}: {key}: expected a number, got {v!r}") from None

        def memory(key):
            return _memory_bytes(field(key), header_units[col[key]], f"{label}:{n}: {key}")

        ecc = optional_number(ecc_key)
        out.append(
            GpuReading(
                index=integer("index"),
                name=field("name") if "name" in col else "",
                total=memory("memory.total"),
                used=memory("memory.used"),
                temperature=optional_number("temperature.gpu"),
                ecc_uncorrected=None if ecc is None else int(ecc),
            )
        )
    return out


def _memory_bytes(value: str, header_unit: str, what: str) -> int:
    parts = value.split()
    unit = (parts[1] if len(parts) > 1 else header_unit or "mib").lower()
    if not parts or unit not in _UNIT_BYTES:
        raise StartupError(f"{what}: cannot read memory {value!r} (expected e.g. '24564 MiB')")
    try:
        return int(parts[0]) * _UNIT_BYTES[unit]
    except ValueError:
        raise StartupError(f"{what}: cannot read memory {value!r} (expected an integer)") from None


# --- NVML ----------------------------------------------------------------------------------------
NO_NVML = (
    "NVML is not available here ({why}): a live snapshot needs the NVIDIA driver on this machine. "
    "On the production node run `" + NVIDIA_SMI_COMMAND + " > gpus.csv` and pass --gpus-csv "
    "gpus.csv (or --status with Concerto's /status JSON)."
)


def read_nvml(config: RoutingConfig | None = None) -> tuple[Gpu, ...]:
    """GPUs from a live NVML snapshot (package ``nvidia-ml-py``), the way Concerto reads them.

    Memory comes in exact bytes; ECC is the aggregate uncorrected counter (what Concerto's
    monitor reads). Without a driver this raises ``StartupError`` with what to do instead.
    """
    return gpus_from_readings(nvml_readings(), config, source="NVML")


def nvml_readings() -> list[GpuReading]:
    try:
        import pynvml
    except ImportError:
        raise StartupError(NO_NVML.format(why="the package nvidia-ml-py is not installed")) from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise StartupError(NO_NVML.format(why=_nvml_why(pynvml, e))) from None
    try:
        out = []
        for k in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(k)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                temp = float(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
            except pynvml.NVMLError:
                temp = None
            try:
                ecc = int(pynvml.nvmlDeviceGetTotalEccErrors(
                    h, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC))  # fmt: skip
            except pynvml.NVMLError:  # no ECC on this card (NotSupported)
                ecc = None
            out.append(GpuReading(
                index=k, name=name.decode() if isinstance(name, bytes) else str(name),
                total=int(mem.total), used=int(mem.used), temperature=temp, ecc_uncorrected=ecc,
            ))  # fmt: skip
        return out
    except pynvml.NVMLError as e:
        raise StartupError(f"NVML: reading the GPUs failed: {e}") from None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _nvml_why(pynvml, e) -> str:
    code = getattr(e, "value", None)
    known = {
        getattr(pynvml, "NVML_ERROR_LIBRARY_NOT_FOUND", -1): "libnvidia-ml.so not found: no NVIDIA driver installed",
        getattr(pynvml, "NVML_ERROR_DRIVER_NOT_LOADED", -1): "the NVIDIA driver is not loaded",
        getattr(pynvml, "NVML_ERROR_NO_PERMISSION", -1): "no permission to talk to the driver",
    }  # fmt: skip
    return known.get(code, f"nvmlInit failed: {e}")


# --- Concerto /status ----------------------------------------------------------------------------
STATUS_ROUNDING = (
    "{src}: /status prints sizes rounded to one decimal (e.g. '23.7 GiB', up to +-0.05 GiB = "
    "53,687,091 bytes off), so loads near a fit edge may replay differently; prefer the "
    "nvidia-smi CSV of the same start-up"
)


def read_status(
    source: str | Path | dict | list, config: RoutingConfig | None = None
) -> tuple[Gpu, ...]:
    """GPUs from Concerto's ``GET /status`` JSON (a path, JSON text, or the parsed object).

    Accepted per GPU: ``id``/``index``/``gpu_id`` (int or ``"gpu:N"``), ``health``,
    ``memory_total``/``memory_used``/``memory_available`` as size strings (Concerto's rounded
    display, with a warning) or ``*_bytes`` integers (exact), optional ``temperature`` /
    ``ecc_errors`` and ``loaded_models``. The reported ``health`` is Concerto's own start-up
    classification (0.1 never updates it), so it wins over a temperature read later. A snapshot
    taken with models loaded has their registry sizes taken out of ``used`` to leave the
    foreign usage, with a warning.
    """
    label, doc = _status_doc(source)
    gpus = doc.get("gpus") if isinstance(doc, dict) else doc
    if not isinstance(gpus, list) or not gpus:
        raise StartupError(f"{label}: expected a 'gpus' list in the /status JSON")
    sizes = {m.id: m.vram for m in config.models} if config is not None else {}
    rounded = False
    readings = []
    for k, g in enumerate(gpus):
        where = f"{label}: gpus[{k}]"
        if not isinstance(g, dict):
            raise StartupError(f"{where}: expected an object, got {g!r}")
        index = _status_index(g, k, where)
        total, r1 = _status_size(g, "memory_total", where)
        used, r2 = _status_size(g, "memory_used", where)
        avail, r3 = _status_size(g, "memory_available", where)
        rounded |= r1 or r2 or r3
        if total is None:
            raise StartupError(f"{where}: memory_total (or memory_total_bytes) is missing")
        if used is None:
            if avail is None:
                raise StartupError(f"{where}: needs memory_used or memory_available")
            used = total - avail
        used = min(max(used, 0), total)
        loaded = _status_loaded(g.get("loaded_models") or [], sizes, where)
        if loaded:
            resident = sum(loaded.values())
            warnings.warn(
                f"{where}: taken with {len(loaded)} model(s) loaded ({', '.join(loaded)}); their "
                f"sizes ({resident:,} bytes) are taken out of memory_used to estimate the foreign "
                "usage at start-up",
                stacklevel=2,
            )
            used = max(0, used - resident)
        health = g.get("health")
        if health is not None and str(health).lower() not in ("healthy", "degraded", "unhealthy"):
            raise StartupError(f"{where}: health: unknown value {health!r}")
        temp = _first(g, "temperature", "temperature_celsius", "temperature_c", "temp")
        ecc = _first(g, "ecc_errors", "ecc_uncorrected", "ecc_errors_uncorrected")
        readings.append(GpuReading(
            index=index, name=str(g.get("name", "")), total=total, used=used,
            temperature=None if temp is None else float(temp),
            ecc_uncorrected=None if ecc is None else int(ecc),
            health=str(health).capitalize() if health is not None else None,
        ))  # fmt: skip
    if rounded:
        warnings.warn(STATUS_ROUNDING.format(src=label), stacklevel=2)
    return gpus_from_readings(readings, config, source=label)


def _status_doc(source):
    if isinstance(source, (dict, list)):
        return "/status", source
    if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
        label, text = "/status JSON", source
    else:
        label = str(source)
        try:
            text = Path(source).read_text(encoding="utf-8-sig")
        except OSError as e:
            raise StartupError(f"{label}: cannot read /status JSON: {e.strerror or e}") from None
    try:
        return label, json.loads(text)
    except json.JSONDecodeError as e:
        raise StartupError(f"{label}:{e.lineno}: not valid JSON: {e.msg}") from None


def _first(g: dict, *keys):
    for k in keys:
        if g.get(k) is not None:
            return g[k]
    return None


def _status_index(g: dict, k: int, where: str) -> int:
    v = _first(g, "id", "index", "gpu_id")
    if v is None:
        return k
    m = re.fullmatch(r"(?:gpu:)?(\d+)", str(v).strip())
    if not m or isinstance(v, bool):
        raise StartupError(f"{where}: id: expected a GPU index or 'gpu:N', got {v!r}")
    return int(m.group(1))


def _status_size(g: dict, key: str, where: str) -> tuple[int | None, bool]:
    """``(bytes, rounded)``: exact from ``<key>_bytes``, rounded from a display string."""
    if g.get(f"{key}_bytes") is not None:
        v = g[f"{key}_bytes"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise StartupError(f"{where}: {key}_bytes: expected a byte count, got {v!r}")
        return v, False
    v = g.get(key)
    if v is None:
        return None, False
    if isinstance(v, int) and not isinstance(v, bool):
        return v, False
    try:
        return parse_size(str(v).replace(" ", ""), what=f"{where}: {key}"), True
    except SizeError as e:
        raise StartupError(str(e)) from None


def _status_loaded(models: list, sizes: dict, where: str) -> dict[str, int]:
    out = {}
    for m in models:
        if isinstance(m, str):
            mid, vram = m, None
        elif isinstance(m, dict):
            mid = _first(m, "model", "id", "model_id")
            vram = _first(m, "vram_bytes", "vram_required_bytes")
        else:
            raise StartupError(f"{where}: loaded_models: cannot read {m!r}")
        if vram is None:
            if mid not in sizes:
                raise StartupError(
                    f"{where}: loaded model {mid!r} has no size and is not in the config's registry"
                )
            vram = sizes[mid]
        out[str(mid)] = out.get(str(mid), 0) + int(vram)
    return out


# --- one entry point for the CLI -----------------------------------------------------------------
def read_snapshots(
    *,
    csv_paths: Sequence[str | Path] = (),
    status_paths: Sequence[str | Path] = (),
    nvml: bool = False,
    config: RoutingConfig | None = None,
) -> list[tuple[Gpu, ...]]:
    """Start-up snapshots in order (CSV files, then /status files, then NVML); one per start."""
    snaps = [read_nvidia_smi_csv(p, config) for p in csv_paths]
    snaps += [read_status(p, config) for p in status_paths]
    if nvml:
        snaps.append(read_nvml(config))
    return snaps


__all__ = [
    "GpuReading",
    "MIB",
    "NVIDIA_SMI_COMMAND",
    "StartupError",
    "classify_health",
    "gpus_from_readings",
    "read_nvidia_smi_csv",
    "read_nvml",
    "read_snapshots",
    "read_status",
]
