"""Configuration: dataclass schemas of the Hydra configs (``schema``: a misspelled key is an
error naming it), the safe ``_target_`` instantiation (``instantiate``), and builders that turn
a composed config into plain library objects: data sets and model factories (``build``), the
two-tower run (``retrieval``), the run plan of either task (``plan``), old run configs upgraded
on load (``legacy``, ``runs``) and the requests of the commands that read runs (``commands``).

Runs nothing itself. The only layer besides ``cli`` that imports Hydra/OmegaConf; may import
``train``, ``ranking``, ``models``, ``retrieval``, ``modules``, ``metrics``, ``data`` and
``types``; never ``apps`` or ``cli``.
"""
