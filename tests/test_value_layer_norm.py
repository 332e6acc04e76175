"""Where V's LayerNorm sits, and that configs and checkpoints of each placement load as they were built.

The references (IDQL's and AlignIQL's jaxrl5 MLP, `use_layer_norm=True` for V) normalise V's input once;
this project put a LayerNorm after every hidden layer until 2026-12-06 and said it followed them.
"""
import json
from pathlib import Path

import pytest
import torch

from configs import quickstart
from errors import UserFacingError
from learner.checkpoint import check_same_architecture
from networks.factory import make_value
from networks.mlp import ValueNet, value_layer_norm_placement

OBS = 5


def norms(net: ValueNet) -> list[int]:
    """Positions of the LayerNorms in V, counted in layers from the input (0 = on the observation)."""
    found = [0] if net.norm is not None else []
    linear = 0
    for layer in net.net:
        if isinstance(layer, torch.nn.LayerNorm):
            found.append(linear)
        elif not isinstance(layer, (torch.nn.ReLU,)):
            linear += 1
    return found


def test_the_default_normalises_the_input_once_as_the_references_do():
    cfg = quickstart.get_config()
    assert cfg.value_layer_norm == "input"
    net = make_value(cfg, OBS)
    assert norms(net) == [0]
    # one LayerNorm over the observation's features: rescaling the observation leaves V unchanged
    obs = torch.randn(7, OBS)
    with torch.no_grad():
        assert torch.allclose(net(obs), net(1000.0 * obs), atol=1e-4)


def test_hidden_and_none_placements():
    cfg = quickstart.get_config()
    cfg.value_layer_norm = "hidden"
    assert norms(make_value(cfg, OBS)) == [1, 2]        # after each of the two hidden layers
    cfg.value_layer_norm = "none"
    assert norms(make_value(cfg, OBS)) == []
    with pytest.raises(ValueError, match="placement"):
        ValueNet(OBS, layer_norm="output")


@pytest.mark.parametrize("legacy, placement", [(True, "hidden"), (False, "none"), ("True", "hidden"),
                                               ("False", "none"), ("input", "input")])
def test_older_configs_bool_setting_means_what_it_built(legacy, placement):
    assert value_layer_norm_placement(legacy) == placement


def test_a_checkpoint_of_another_placement_is_refused_naming_the_setting(tmp_path):
    saved = json.loads(quickstart.get_config().to_json())
    saved["value_layer_norm"] = True        # as a run of the former default wrote it
    cfg = quickstart.get_config()           # today's default: "input"
    with pytest.raises(UserFacingError, match=r"value_layer_norm 'hidden' there, 'input' here.*"
                                              r"--config.value_layer_norm=hidden"):
        check_same_architecture(tmp_path / "checkpoint.pt", json.dumps(saved), cfg, "To continue it, add")
    cfg.value_layer_norm = "hidden"
    check_same_architecture(tmp_path / "checkpoint.pt", json.dumps(saved), cfg, "To continue it, add")
    # a config from before the setting existed built V without LayerNorm
    old = dict(saved)
    del old["value_layer_norm"]
    cfg.value_layer_norm = "none"
    check_same_architecture(tmp_path / "checkpoint.pt", json.dumps(old), cfg, "To continue it, add")


def test_the_multipliers_normalise_their_input_once_as_the_alignIQL_reference_does():
    from networks.factory import make_multipliers

    cfg = quickstart.get_config()
    cfg.algorithm = "aligniql_hard"
    assert cfg.multipliers.layer_norm == "input"
    alpha, _ = make_multipliers(cfg, OBS)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in alpha.net)
    cfg.multipliers.layer_norm = "input+hidden"
    alpha, _ = make_multipliers(cfg, OBS)
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in alpha.net) == 2
    # a config from before the setting existed built the hidden LayerNorms, and loads as such
    saved = json.loads(cfg.to_json())
    del saved["multipliers"]["layer_norm"]
    cfg.multipliers.layer_norm = "input"
    with pytest.raises(UserFacingError, match="--config.multipliers.layer_norm=input\\+hidden"):
        check_same_architecture(Path("checkpoint.pt"), json.dumps(saved), cfg, "To continue it, add")




@pytest.mark.parametrize("field, value", [("value_layer_norm", "output"), ("multipliers.layer_norm", "hidden")])
def test_unknown_placements_are_refused_naming_the_field(field, value):
    from errors import ConfigError
    from learner.config_check import check_config

    cfg = quickstart.get_config()
    parent, _, leaf = field.rpartition(".")
    (cfg[parent] if parent else cfg)[leaf] = value
    with pytest.raises(ConfigError, match=f"config.{field}="):
        check_config(cfg)
