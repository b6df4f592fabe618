"""Typed run configuration: YAML -> dataclasses, `key=value` overrides, a stable `run_id`.

Every key and every enumerated value is checked: a misspelled one is an error naming the closest valid
one, never dropped, raised when the config is read (before any data is touched).
`schema` holds the dataclasses, `keys` the dotted-key aliases and helpers, `io` reading, overrides, run_id.

>>> cfg = config_from_dict({"loss": {"name": "bdl"}, "train": {"epochs": 3}})
>>> cfg.train.epochs
3
>>> config_from_dict({"train": {"epohcs": 3}})
Traceback (most recent call last):
...
dmlbench.errors.ConfigError: unknown config key 'train.epohcs'; did you mean 'train.epochs'?
>>> config_from_dict({"eval": {"backend": "faisss"}})
Traceback (most recent call last):
...
dmlbench.errors.ConfigError: eval.backend must be one of auto, torch, faiss-cpu, faiss-gpu, not 'faisss'; did you mean 'faiss-cpu'?
>>> apply_overrides(cfg, ["train.lr=0.01", "loss.params.alpha=3"]).loss.params
{'alpha': 3}
>>> run_id(cfg) == run_id(config_from_dict(config_to_dict(cfg)))
True
"""

from dmlbench.config.io import (
    ConfigYamlLoader,
    apply_overrides,
    canonical,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    load_yaml,
    parse_override,
    read_yaml_file,
    run_id,
)
from dmlbench.config.keys import KEY_ALIASES, NAME_CHECKED_KEYS, get_dotted, normalise_key, set_dotted
from dmlbench.config.schema import (
    AMP_MODES,
    BACKENDS,
    COMPILE_MODES,
    LAYERS,
    LR_SCHEDULES,
    OPTIMIZERS,
    PROTOCOLS,
    RUNTIME_KEYS,
    Config,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    SamplerConfig,
    TrackConfig,
    TrainConfig,
    enumerated_keys,
)
from dmlbench.errors import ConfigError

__all__ = [
    "AMP_MODES", "BACKENDS", "COMPILE_MODES", "KEY_ALIASES", "LAYERS", "LR_SCHEDULES", "NAME_CHECKED_KEYS",
    "OPTIMIZERS", "PROTOCOLS", "RUNTIME_KEYS", "Config", "ConfigError", "ConfigYamlLoader", "DataConfig",
    "EvalConfig", "LossConfig", "ModelConfig", "SamplerConfig", "TrackConfig", "TrainConfig", "apply_overrides", "canonical",
    "config_from_dict", "config_to_dict", "dump_config", "enumerated_keys", "get_dotted", "load_config",
    "load_yaml", "normalise_key", "parse_override", "read_yaml_file", "run_id", "set_dotted",
]
