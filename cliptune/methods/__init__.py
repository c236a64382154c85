"""Every fine-tuning method, one short file each, made by name: ``methods.create("coop", clip)``.

Introduced in notebook 02. The contract they all follow is in :mod:`cliptune.methods.base`.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import json

from cliptune.methods.base import Batch, Method, WidthMismatchError, model_widths  # noqa: F401

REGISTRY = {  # name -> "module:Class", imported on first use
    "zero-shot": "zero_shot:ZeroShot",
    "coop": "coop:CoOp",
    "cocoop": "cocoop:CoCoOp",
    "kgcoop": "kgcoop:KgCoOp",
    "contcoop": "contcoop:ContCoOp",
    "linear-probe": "linear_probe:LinearProbe",  # classic: logistic regression, C on validation
    "linear-probe-zs": "linear_probe:LinearProbeZS",  # zero-shot init, trained by SGD
    "clip-adapter": "clip_adapter:ClipAdapter",
    "tip-adapter": "tip_adapter:TipAdapter",
    "tip-adapter-f": "tip_adapter:TipAdapterF",
    "ivlp": "maple:IVLP",
    "maple": "maple:MaPLe",
    "restore": "restore:Restore",
    "ft": "finetune:FineTune",
    "lp-ft": "finetune:LPFT",
    "flyp": "flyp:FLYP",
    "arf": "arf:ARF",
}


def method_class(name: str):
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=3)
        raise KeyError(f"unknown method {name!r} (close: {close}); known: {sorted(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(f"cliptune.methods.{module}"), cls)


def available() -> list[str]:
    return sorted(REGISTRY)


def preset(name: str, label: str) -> dict:
    """The config overrides of a named variant of ``name`` (its module's ``PRESETS``), e.g.
    ``preset("maple", "workbook-v1")``: the baselines' earlier defaults and the
    reconstructions' design switches, for ablations and :mod:`cliptune.selection`."""
    import sys
    method_class(name)
    presets = getattr(sys.modules[method_class(name).__module__], "PRESETS", {})
    if label not in presets:
        raise KeyError(f"{name} has no preset {label!r}; its presets are {sorted(presets)}")
    return dict(presets[label])


def create(name: str, clip, **config) -> Method:
    """A fresh method, its parameters shaped (and, where the paper says so, initialised) by
    ``clip``; keyword arguments override fields of the method's config dataclass."""
    cls = method_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(config) - fields
    if unknown:
        raise TypeError(f"{name} has no setting(s) {sorted(unknown)}; its settings are "
                        f"{sorted(fields)}")
    if name == "zero-shot":
        return cls(cls.Config(**config))
    return cls(clip, cls.Config(**config))


def read_metadata(path) -> dict:
    from cliptune import models
    meta = models.load_metadata(path)
    if "method" not in meta:
        raise ValueError(f"{path} holds no cliptune method (no 'method' in its metadata)")
    return meta


def load(path, clip, classnames=None, templates=("a photo of a {}.",)) -> Method:
    """Load a saved module and (optionally) attach it to ``clip`` and ``classnames``.

    Fails with :class:`WidthMismatchError` before touching any tensor if ``clip`` has other
    widths than the model the module was trained on.
    """
    from cliptune import models
    meta = read_metadata(path)
    widths = json.loads(meta.get("widths", "{}"))
    have = model_widths(clip.model)
    for key, want in widths.items():
        if have.get(key) != want:
            raise WidthMismatchError(f"{path} was trained for {key} {want}, but {clip.key} has "
                                     f"{key} {have.get(key)}")
    config = json.loads(meta["config"])
    method = create(meta["method"], clip, **config)
    state = models.load_weights(path)
    method.load_state_dict(state, strict=True)
    if classnames is not None:
        method.attach(clip, classnames, templates)
    return method


def class_weights(method: Method, clip, classnames, templates=("a photo of a {}.",)):
    """Standalone inference: the normalised class weights [C, D] a text-side module gives on
    ``clip``. Classify with ``logit_scale * normalize(clip.model.encode_image(x)) @ W.T``."""
    import torch
    method.attach(clip, classnames, templates)
    if not hasattr(method, "class_features"):
        raise TypeError(f"{method.name} does not reduce to class weights (it changes the image "
                        "side too); use method(batch) for its logits")
    with torch.no_grad():
        return method.class_features()
