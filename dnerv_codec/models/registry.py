"""Model families by name: what an encode trains and what a file's decoder rebuilds.

A family is a torch-free config type (format/architecture.py: what its header fields mean, the
shapes of the tensors its file carries, what rendering a frame costs) and a network that
realises it (a `VideoModel`, whose `decoder` is what the file carries). The header names the
family in its `model` field (none: DNeRV, as every file written before families). Adding one
is a module with the two, and a `register` line:

    register(Family("toy", ToyConfig, ToyModel, ToyDecoder), models={"toy": Model(...)})

`build(config)` and `build_decoder(config)` are how the rest of the codec makes networks: no
caller names DNeRV. The named models an encode can ask for (`--model dnerv`, `--model hnerv`)
are variants of a family, told apart by the config's fields (architecture.MODELS, torch-free
so that the CLI can list them).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dnerv_codec.format.architecture import FAMILIES, MODELS, Model, ModelConfig
from dnerv_codec.format.container import model_name_problem
from dnerv_codec.models.base import VideoModel
from dnerv_codec.models.dnerv import Decoder, DNeRV


@dataclass(frozen=True)
class Family:
    name: str                      # the header's `model` field
    config_type: type[ModelConfig]  # its torch-free architecture, with `family == name`
    model_type: type               # config -> a VideoModel (encoders and decoder: trained)
    decoder_type: type             # config -> the decoder alone (what a file rebuilds)


NETWORKS: dict[str, Family] = {"dnerv": Family("dnerv", ModelConfig, DNeRV, Decoder)}


def register(family: Family, models: dict[str, Model]) -> None:
    """Make `family` buildable and readable (its config type joins the reader's FAMILIES), and
    `models` askable by name. A name already taken is refused."""
    problem = model_name_problem(family.name)
    if problem or family.config_type.family != family.name:
        raise ValueError(problem or f"family {family.name!r} is not its config type's `family`")
    taken = ([family.name] if family.name in NETWORKS else []) + [n for n in models if n in MODELS]
    if taken:
        raise ValueError(f"already registered: {', '.join(taken)}")
    NETWORKS[family.name] = family
    FAMILIES[family.name] = family.config_type
    MODELS.update(models)


def unregister(name: str) -> None:
    """Forget family `name` and its models (tests register toy families for a while)."""
    NETWORKS.pop(name, None)
    FAMILIES.pop(name, None)
    for key in [k for k, m in MODELS.items() if m.family == name]:
        del MODELS[key]


def _family(config: ModelConfig) -> Family:
    family = NETWORKS.get(config.family)
    if family is None or type(config) is not family.config_type:
        raise ValueError(f"no network is registered for a {type(config).__name__} "
                         f"of family {config.family!r}")
    return family


def build(config: ModelConfig) -> VideoModel:
    """The trainable model (encoders and decoder) of `config`'s family."""
    return _family(config).model_type(config)


def build_decoder(config: ModelConfig) -> nn.Module:
    """The decoder alone, as a file rebuilds it: embeddings in, a padded frame out."""
    return _family(config).decoder_type(config)
