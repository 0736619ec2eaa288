"""recsys.models: one model per file; this registry maps short names to import paths.

Every model is built as ``cls(feature_spec, embeddings, **hyperparams)`` and called as
``model(dense: B x D, sparse: KeyedJaggedTensor) -> B x T`` logits. Importing this package
imports no model (and no torch).

Example::

    cls = model_class("dlrm")  # recsys.models.dlrm.DLRM
"""

from __future__ import annotations

import importlib

__all__ = ["MODELS", "UnknownModelError", "model_class"]

MODELS: dict[str, str] = {
    "dlrm": "recsys.models.dlrm:DLRM",
    "dcn": "recsys.models.dcn:DCNv2",
    "multitask": "recsys.models.multitask:MultiTaskRanker",
    "logreg": "recsys.models.logreg:LogisticRegression",
}


class UnknownModelError(KeyError, ValueError):
    """No model is registered under the name (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def model_class(name: str) -> type:
    """The model class registered as ``name``, imported on first use.

    Raises:
        UnknownModelError: unknown name (the message lists the known ones).
    """
    try:
        target = MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
