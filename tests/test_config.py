import dataclasses
import json
import logging
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

from ikd.config import PRESETS, Config, apply_overrides, dotted_keys, load_config
from ikd.errors import ConfigError
from ikd.method_params import PARAMS


def test_defaults_are_the_papers_radar_reading():
    radar = Config().radar
    assert radar.num_samples == 256 and radar.num_chirps == 200
    assert radar.range_resolution_m == pytest.approx(0.195, abs=1e-3)
    assert radar.velocity_resolution_m_s == pytest.approx(0.06, abs=2e-3)
    assert radar.max_velocity_m_s == pytest.approx(5.9, abs=0.05)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_loads_and_round_trips_through_a_dict(preset):
    config = load_config(preset, warn=False)
    assert config.preset == preset
    assert Config.from_dict(config.to_dict()) == config
    # also its JSON, so a config's hash is the same made or read back (a float field's default
    # written `1` would be `1.0` once read: 1 == 1.0, but not in the hash)
    assert json.dumps(Config.from_dict(config.to_dict()).to_dict()) == json.dumps(config.to_dict())


def test_an_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'radar.num_chirp'; did you mean 'radar.num_chirps'"
    ):
        load_config("smoke", ["radar.num_chirp=100"])
    with pytest.raises(ConfigError, match="did you mean 'dsp'"):
        Config.from_dict({"dps": {}})


def test_an_unknown_preset_is_refused():
    with pytest.raises(ConfigError, match="did you mean 'laptop'"):
        load_config("lapton")


def test_overrides_parse_by_field_type_and_survive_a_round_trip():
    config = load_config(
        "smoke",
        ["radar.num_chirps=48", "dsp.dynamic_range_db=35.5", "synthetic.seed=7"],
        warn=False,
    )
    assert config.radar.num_chirps == 48 and isinstance(config.radar.num_chirps, int)
    assert config.dsp.dynamic_range_db == 35.5
    assert Config.from_dict(config.to_dict()) == config
    again = apply_overrides(
        load_config("smoke", warn=False),
        {"radar.num_chirps": 48, "dsp.dynamic_range_db": 35.5, "synthetic.seed": 7},
    )
    assert again == config and again.hash() == config.hash()


def test_a_json_round_trip_is_exact_tuples_included():
    config = load_config("laptop", ["train.lr_milestones=[3, 5]"], warn=False)
    assert config.train.lr_milestones == (3, 5)
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_the_papers_training_defaults():
    config = Config()
    assert (config.train.epochs, config.train.batch_size, config.train.lr) == (200, 128, 1e-4)
    assert (config.identitykd.gamma, config.identitykd.tau) == (0.8, 5.0)
    assert (config.identitykd.lambda1, config.identitykd.lambda2) == (0.5, 0.4)


def test_the_preset_is_not_an_override():
    with pytest.raises(ConfigError, match="--preset"):
        load_config("smoke", ["preset=paper"])


def test_a_value_of_the_wrong_type_is_refused():
    with pytest.raises(ConfigError, match="expected int"):
        load_config("smoke", ["radar.num_chirps=many"])
    with pytest.raises(ConfigError, match="expected int"):
        Config.from_dict({"radar": {"num_chirps": "64"}})
    with pytest.raises(ConfigError, match="key=value"):
        load_config("smoke", ["radar.num_chirps"])
    with pytest.raises(ConfigError, match=r"lr_milestones\[0\]: expected int"):
        load_config("smoke", ["train.lr_milestones=[1.5]"])


def test_inconsistent_settings_are_refused():
    with pytest.raises(ConfigError, match="do not fit"):
        load_config("smoke", ["radar.num_chirps=400"])
    with pytest.raises(ConfigError, match="window_frames"):
        load_config("smoke", ["dsp.window_frames=500"])


def test_the_hash_is_stable_and_sensitive():
    a, b = load_config("smoke", warn=False), load_config("smoke", warn=False)
    assert a.hash() == b.hash() and len(a.hash()) == 12
    assert load_config("smoke", ["synthetic.seed=1"], warn=False).hash() != a.hash()


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().radar.num_chirps = 3  # type: ignore[misc]


def test_reduced_presets_say_so(caplog):
    with caplog.at_level(logging.INFO, logger="ikd.config"):
        load_config("laptop")
    assert "radar.num_chirps 200 → 64" in caplog.text and "WARNING" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ikd.config"):
        load_config("paper")
    assert "coarsely" not in caplog.text


def test_every_dotted_key_is_overridable():
    """Each key takes a different valid value and the value lands where the key says."""
    base = load_config("laptop", warn=False)
    for key, kind in dotted_keys().items():
        if key == "preset":
            continue
        section, name = key.split(".")
        old = getattr(getattr(base, section), name)
        if kind is str:
            candidates = [
                "pretrained",
                "elsewhere",
                "baseline",
                "vgg16",
                "cpu",
                "kl",
                "storage",
                "SPREAD",
            ]
        elif kind is bool:
            candidates = [not old]
        elif kind is int:
            candidates = [old + 1, old - 1, old + 2]
        elif kind is float:
            candidates = [v for v in (old * 0.9, old * 1.1, 0.5) if v != old]
        else:  # tuple[int, ...]
            candidates = [(*old, old[-1] + 1) if old else (1,), old[:-1]]
        landed = False
        for value in candidates:
            try:
                config = apply_overrides(base, {key: value})
            except ConfigError:
                continue
            assert getattr(getattr(config, section), name) == value != old
            landed = True
            break
        assert landed, key


def test_numpy_scalars_from_tuners_are_accepted():
    config = apply_overrides(
        load_config("smoke", warn=False),
        {"radar.num_chirps": np.int64(48), "identitykd.tau": np.float32(0.5)},
    )
    assert config.radar.num_chirps == 48 and type(config.radar.num_chirps) is int
    assert type(config.identitykd.tau) is float


@pytest.mark.parametrize(
    "override",
    [
        "radar.sample_rate_hz=0",
        "synthetic.walk_duration_s=inf",
        "identitykd.tau=nan",
        "train.epochs=3",
        "identitykd.delta1=-1",
        "identitykd.contrast=dot",
        "vanilla_kd.lambda1=-0.1",
        "cfkd.temperature=0",
        "mkd.margin=2",
        "identitykd.kd_temperature=0",
        "vanilla_kd.kd_start_epoch=-1",
        "baseline.fawa_decay=1",
    ],
)
def test_impossible_values_are_config_errors(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config("laptop", [override])


def test_importing_and_building_a_config_loads_neither_torch_nor_any_method():
    code = (
        "import sys; from ikd.config import Config, load_config; Config(); "
        "load_config('laptop', ['identitykd.tau=0.1'], warn=False); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', "
        "'ikd.methods', 'ikd.models', 'ikd.train'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_method_with_settings_has_its_own_section_of_its_own_symbols():
    fields = {f.name: f.type for f in dataclasses.fields(Config)}
    assert "distill" not in fields
    for name, params in PARAMS.items():
        if dataclasses.fields(params):
            assert typing.get_type_hints(Config)[name] is params, name
        # keys are the paper's symbols, never prefixed with a method's name
        for field in dataclasses.fields(params):
            assert not any(field.name.startswith(f"{method}_") for method in PARAMS), field.name
    config = load_config("smoke", ["train.method=baseline", "baseline.fawa=true"], warn=False)
    assert config.method_params() is config.baseline and config.baseline.fawa
    config = load_config("smoke", ["train.method=cfkd", "cfkd.temperature=0.07"], warn=False)
    assert config.method_params() is config.cfkd and config.cfkd.temperature == 0.07


def test_a_shared_setting_is_defined_once_but_set_per_method():
    config = load_config("smoke", ["vanilla_kd.lambda1=0.3"], warn=False)
    assert (config.vanilla_kd.lambda1, config.identitykd.lambda1) == (0.3, 0.5)
    laptop = load_config("laptop", warn=False)
    assert laptop.identitykd.warmup_epochs == laptop.vanilla_kd.warmup_epochs == 2


def test_weight_averaging_is_a_setting_of_every_method_on_by_default_for_identitykd_only():
    paper, laptop = load_config("paper", warn=False), load_config("laptop", warn=False)
    assert [m for m in PARAMS if getattr(paper, m).fawa] == ["identitykd"]
    assert {getattr(paper, m).fawa_decay for m in PARAMS} == {0.88}  # CFA's, 200 epochs
    assert {getattr(laptop, m).fawa_decay for m in PARAMS} == {0.5}  # 10 epochs (the preset says)


def test_eq_14_is_on_cfas_scale_and_plain_vanilla_kd_on_hintons():
    config = load_config("paper", warn=False)
    assert config.identitykd.kd_temperature == config.vanilla_kd.kd_temperature == 1
    assert config.vanilla_kd.temperature == 4
    assert config.identitykd.kd_start_epoch == config.vanilla_kd.kd_start_epoch == 0
    with pytest.raises(ConfigError, match=r"did you mean 'identitykd\.kd_temperature'"):
        load_config("smoke", ["identitykd.temperature=4"])


def test_an_unknown_method_key_names_the_nearest_key_of_that_section():
    with pytest.raises(ConfigError, match=r"did you mean 'identitykd\.tau'"):
        load_config("smoke", ["identitykd.taus=0.1"])
    with pytest.raises(ConfigError, match=r"did you mean 'cfkd\.temperature'"):
        load_config("smoke", ["cfkd.temperatur=0.1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'distill\.tau'"):
        load_config("smoke", ["distill.tau=0.1"])


def test_the_readme_lists_every_dotted_key():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [key for key in dotted_keys() if key != "preset" and f"`{key}`" not in readme]
    assert not missing
