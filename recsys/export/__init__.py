"""Taking a trained model out of training: ONNX export, the export manifest, parity checks.

Modules: ``manifest`` (the export folder's format; standard library only, so the inference
service reads it without torch), ``graph`` (the exported modules: a model whose embedding
lookups are explicit ``index_add`` pooling over per-feature ids and lengths), ``onnx_export``
(``torch.onnx.export(dynamo=True)`` with dynamic batch and id counts), ``parity`` (ONNX Runtime
against PyTorch eager on a split), ``ranker`` / ``two_tower`` (a whole run's export folder).

May import ``models``, ``modules``, ``retrieval``, ``data``, ``metrics`` and ``types``; never
``train``, ``config``, ``apps`` or MLflow (the run's MLflow record is written by ``apps``).
Importing the package imports nothing.
"""
