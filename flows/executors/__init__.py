"""Executors: where the shard step runs. Each maps it over shards and hands results back in plan order.

``base`` holds the interface; ``local`` runs shards in this process (two at
a time, overlapped), ``devices`` one worker process per device, and
``prefect_pool`` flow runs on a Prefect work pool. A new engine is one new
module implementing ``Executor``.
"""
