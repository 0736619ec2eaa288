"""Distributed training: the one trainer in several processes under Ray Train.

``sharding`` (TorchRec sharding plans for the embedding tables, the memory budget, the initial
weights copied into the shards), ``checkpoint`` (each worker's shards through
``torch.distributed.checkpoint``), ``worker`` (what every Ray Train worker runs: the trainer on
its shard of data and tables) and ``launcher`` (the driver: checks, Ray, ``TorchTrainer``, the
final unsharded model). The only importer of ``ray.train``; importing this package imports
neither Ray nor the sharding machinery. May import ``recsys.train`` and everything below it.
"""
