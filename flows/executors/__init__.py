"""Executors: where the shard step runs. Each maps it over shards and hands results back in plan order.

``base`` holds the interface; ``local`` runs shards in this process (two at
a time, overlapped), ``devices`` one worker process per device,
``prefect_pool`` flow runs on a Prefect work pool (workers stage, the driver
decides), and ``ray_cluster`` one actor per worker of a Ray cluster (results
back through Ray's object store; ``ray_address`` checks the address before a
job starts). A new engine is one new module implementing ``Executor``.
"""
