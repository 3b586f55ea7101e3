"""Checkpoints in the published CLIP-Driven Universal Model layout, written by the tests themselves.

No published file can be downloaded here, so tests write ``{'net': state_dict}`` with the key
names of the published ``Universal_model`` (github.com/ljwztc/CLIP-Driven-Universal-Model,
``model/Universal_model.py``, ``model/Unet.py``, ``model/SwinUNETR.py``) behind ``module.``,
the Swin UNETR parts at the top level as in the released file, and the ``organ_embedding``
buffer. The renaming is written here, independently of :mod:`radmesh.model.importer`.
"""

from __future__ import annotations

import torch

from radmesh.model import network

SWIN_TOP = ("swinViT.", "encoder1.", "encoder2.", "encoder3.", "encoder4.", "encoder10.",
            "decoder1.", "decoder2.", "decoder3.", "decoder4.", "decoder5.")
REGISTRY = {"unet": "unet_universal", "swinunetr": "swinunetr"}


def to_published(name: str, backbone: str, swin_top_level: bool = True) -> str:
    """Our state_dict name → the published checkpoint key."""
    if backbone == "swinunetr" and swin_top_level and name.startswith("backbone."):
        rest = name[len("backbone."):]
        assert rest.startswith(SWIN_TOP), name
        name = rest
    return "module." + name


def reference_state(backbone: str, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A state_dict of our model with distinctive values, and an organ_embedding (32, 512)."""
    torch.manual_seed(seed)
    model = network.build_model(REGISTRY[backbone], embed_dim=512)
    state = {}
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            value = value + 0.01 * torch.randn_like(value)
            if name.endswith("running_var"):
                value = value.abs() + 0.5
        state[name] = value.clone()
    return state, torch.randn(32, 512)


def write_checkpoint(path, state, embedding, backbone, swin_top_level=True, **edits):
    net = {to_published(n, backbone, swin_top_level): v for n, v in state.items()}
    net["module.organ_embedding"] = embedding
    for key, value in edits.items():
        if value is None:
            del net[key]
        else:
            net[key] = value
    torch.save({"net": net, "optimizer": {"state": {}, "param_groups": []}, "epoch": 7}, path)
    return path
