"""The package's rooms import downwards only, and the model interface holds.

    cli -> commands -> codec -> encoding -> scaling -> training -> coding -> models -> format
                                                            -> (errors, io, metrics)
    cli, codec -> tasks (interpolation and masks: numpy only) -> (errors, io)
    cli, codec -> decoding (the decode side) -> models, format, tasks, device
    io -> passthrough (audio and colour tags, PyAV) -> format (extras.py: their sections)

format/ is the torch-free reader of untrusted bytes: it must not reach up into the rooms that
train or quantize (test_bitstream.py checks that it never imports torch)."""

import ast
from pathlib import Path

import torch

from dnerv_codec.format.architecture import make_config
from dnerv_codec.models.base import VideoModel
from dnerv_codec.models.dnerv import DNeRV

PACKAGE = Path(__file__).resolve().parents[1] / "dnerv_codec"
# What each room may import from the package (besides itself).
MAY_IMPORT = {
    "format": {"errors", "text"},
    "models": {"format", "errors"},
    "coding": {"models", "format", "errors"},
    "training": {"coding", "models", "format", "errors", "io", "metrics", "text", "device"},
    "scaling": {"training", "coding", "models", "format", "errors", "io", "metrics", "device",
                "__init__"},
    "codec": {"encoding", "scaling", "training", "coding", "models", "format", "errors", "io",
              "metrics", "tasks", "decoding", "device", "__init__"},
    # the CLI's subcommands: anything below the CLI itself
    "commands": {"codec", "encoding", "scaling", "training", "coding", "models", "format",
                 "errors", "io", "metrics", "tasks", "decoding", "device", "text", "__init__"},
    # the encode side's steps: never the CLI or the pipeline above them
    "encoding": {"scaling", "training", "coding", "models", "format", "errors", "io", "metrics",
                 "decoding", "device", "text"},
    # the decode side needs the file and the network, never the encoder's rooms
    "decoding": {"format", "models", "tasks", "device", "errors", "text"},
    "device": set(),
    "tasks": {"errors", "io"},
    "io": {"errors", "passthrough", "format"},
    # the source's audio and colour tags through a file: the bytes' layout is format's
    "passthrough": {"errors", "format"},
    "metrics": {"errors"},
    "errors": set(),
    "text": set(),
}


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists()


def _package_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dnerv_codec"):
            if node.module == "dnerv_codec":  # a submodule, or a name of the package itself
                found |= {f"dnerv_codec.{a.name}" if _is_module(a.name) else "dnerv_codec"
                          for a in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dnerv_codec.")}
    return found


def test_every_room_imports_only_the_rooms_below_it():
    checked = 0
    for room, allowed in MAY_IMPORT.items():
        paths = sorted((PACKAGE / room).glob("*.py")) if (PACKAGE / room).is_dir() else [PACKAGE / f"{room}.py"]
        for path in paths:
            for module in _package_imports(path):
                target = _room(module)
                assert target == room or target in allowed, (
                    f"{path.relative_to(PACKAGE)} imports {module}: {room} may import only "
                    f"{sorted(allowed)}")
            checked += 1
    assert checked >= 20  # the rooms exist where this test looks


def test_dnerv_and_its_ablation_meet_the_model_interface():
    for diff_stream in (True, False):
        model = DNeRV(make_config(64, 96, 6, diff_stream))
        assert isinstance(model, VideoModel)
        names = [name for name, _ in model.transmitted()]
        # the file's tensor order is the rebuilt decoder's own order
        assert names == list(model.decoder.state_dict())
        assert model.steps().shape == (len(names),) and bool((model.steps() > 0).all())
        c = model.config
        frames = [torch.rand(1, 3, c.padded_height, c.padded_width) for _ in range(3)]
        content, diff = model.embed(*frames)
        assert (diff is not None) == diff_stream
        assert model(*frames).shape == (1, 3, model.config.padded_height, model.config.padded_width)


def test_the_architecture_is_stated_once():
    """The decoder is built from config.convolutions(); the parameter count, the tensor shapes
    the reader expects and the header fields all derive from the same config."""
    from dnerv_codec.format.architecture import config_from_header, header_fields
    from dnerv_codec.models.dnerv import Decoder

    for h, w, c2, diff, channels in [(64, 96, 6, True, (16, 2)), (180, 320, 14, True, (16, 2)),
                                     (144, 176, 9, False, (16, 2)), (1080, 1920, 24, True, (16, 2)),
                                     (64, 96, 6, True, (3, 1)), (144, 176, 9, False, (5, 2))]:
        config = make_config(h, w, c2, diff, *channels)
        state = Decoder(config).state_dict()
        assert [(n, tuple(t.shape)) for n, t in state.items()] == config.tensor_shapes()
        assert sum(t.numel() for t in state.values()) == config.parameter_count()
        header = {"width": w, "height": h, **header_fields(config)}
        assert config_from_header(header) == config
