"""concerto.toml: registry, routing settings, and errors that name file, line and field."""

import warnings

import pytest

from concerto_lab.io.config import load_config, parse_config
from concerto_lab.model.cluster import ConfigError

from conftest import REPO

GOOD = """\
[server]
port = 8000

[routing]
eviction_policy = "size_weighted_lru"
vram_headroom = "2GiB"
max_healthy_temperature = 70

[[models]]
id = "qwen2.5-7b"
vram_required = "14GB"
pin = true

[[models]]
id = "tiny"
vram_required = 1900000000

[[models]]
id = "frac"
vram_required = "8.2GB"

[[gpus]]
id = 0

[[gpus]]
id = 1
"""


def test_reads_registry_and_routing():
    c = parse_config(GOOD, "c.toml")
    assert c.policy == "size_weighted_lru"
    assert c.headroom == 2 * 2**30
    assert [(m.id, m.vram, m.pin) for m in c.models] == [
        ("qwen2.5-7b", 14_000_000_000, True),
        ("tiny", 1_900_000_000, False),
        ("frac", 8_199_999_999, False),
    ]
    assert c.gpu_ids == (0, 1)
    assert c.max_healthy_temperature == 70 and c.max_degraded_temperature == 85


def test_defaults_are_concertos():
    c = parse_config('[[models]]\nid = "a"\nvram_required = "1GB"\n', "c.toml")
    assert (c.policy, c.headroom) == ("lru", 1_000_000_000)


def test_demo_config_loads_86_models():
    c = load_config(REPO / "data" / "demo" / "concerto.toml")
    assert len(c.models) == 86
    assert c.vram("qwen2.5-7b-instruct") == 13 * 2**30


@pytest.mark.parametrize(
    "text, where, words",
    [
        ('[routing]\neviction_policy = "lfru"\n', "c.toml:2", ["lfru", "lru, lfu, size_weighted_lru"]),
        ('[routing]\nvram_headroom = "1 000 B"\n', "c.toml:2", ["vram_headroom", "1 000 B"]),
        ('[[models]]\nid = "a"\n\nvram_required = "14 gigabytes"\n', "c.toml:4",
         ["'a'", "vram_required", "gigabytes"]),
        ('[[models]]\nid = "a"\nvram_required = "1GB"\n[[models]]\nid = "a"\nvram_required = "2GB"\n',
         "c.toml:5", ["duplicate", "'a'", "line 2"]),
        ('[[models]]\nid = "a"\n', "c.toml:1", ["missing vram_required"]),
        ('[[models]]\nid = "a"\nvram_required = "1GB"\npin = "yes"\n', "c.toml:4", ["pin"]),
        ('[[models]]\nid = "a"\nvram_required = ""\n', "c.toml:3", ["vram_required"]),
        ("[routing\n", "c.toml", ["not valid TOML", "line 1"]),
    ],
)
def test_errors_name_file_line_and_field(text, where, words):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.toml")
    msg = str(e.value)
    assert msg.startswith(where + ":") or msg.startswith(where + " "), msg
    for w in words:
        assert w in msg


def test_typo_in_routing_key_warns_with_suggestion():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c = parse_config('[routing]\nevicton_policy = "lfu"\n', "c.toml")
    assert c.policy == "lru"  # the typo is not silently taken as the policy
    assert any("c.toml:2" in str(x.message) and "eviction_policy" in str(x.message) for x in w)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")


def test_pins_must_be_in_registry():
    c = parse_config(GOOD, "c.toml")
    with pytest.raises(ConfigError, match="'ghost' not in the model registry"):
        c.with_(add_pins=["ghost"])
    assert c.with_(pins=["tiny"]).pins == {"tiny"}
