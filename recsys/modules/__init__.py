"""recsys.modules: building blocks shared by the models.

* :mod:`recsys.modules.embedding`: embedding tables (TorchRec, plain or fused), parameter split.
* :mod:`recsys.modules.mlp`: :class:`~recsys.modules.mlp.MLP`.
* :mod:`recsys.modules.interaction`: DLRM dot interaction, DCN-v2 cross network.
* :mod:`recsys.modules.experts`: MMoE and PLE multi-task expert layers.

Submodules are imported explicitly; importing this package imports nothing else.
"""
