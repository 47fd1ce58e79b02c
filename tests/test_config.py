"""TemporalConfig validation: every invalid value is refused with the field's name."""

from __future__ import annotations

import pytest

from stave import TemporalConfig

pytestmark = pytest.mark.version_independent  # runs once: see tests/version_independence.py


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("head_scale", 0),
        ("head_scale", -0.5),
        ("head_scale", "0.25"),
        ("head_scale", float("nan")),
        ("rope_theta", 0.0),
        ("layers", [0, -1]),
        ("layers", [1, 1]),
        ("layers", []),
        ("layers", "0,1"),
        ("layers", [0.5]),
        ("order", "interleaved"),
        ("init", "xavier"),
        ("images", "drop"),
        ("gate", "sigmoid"),
        ("gate_init", 0.0),
        ("gate_init", "1e-5"),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"TemporalConfig\.{field}"):
        TemporalConfig(**{field: value})


def test_defaults_are_the_papers():
    config = TemporalConfig()
    assert (config.head_scale, config.layers, config.order, config.init, config.images, config.rope_theta) == (
        0.25,
        None,
        "spatial_first",
        "zero",
        "skip",
        10000.0,
    )
    assert (config.gate, config.gate_init) == ("none", 1e-5)
    assert config.num_heads(16) == 4 and config.num_heads(2) == 1
    assert config.selected_blocks(3) == [0, 1, 2]


def test_dict_round_trip_and_unknown_keys():
    config = TemporalConfig(
        head_scale=0.5, layers=[3, 1], order="temporal_first", init="random", images="apply", gate="layerscale"
    )
    assert config.layers == [1, 3]
    assert TemporalConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown TemporalConfig field\(s\) \['heads'\]"):
        TemporalConfig.from_dict({"heads": 4})
