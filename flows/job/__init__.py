"""The job's data path: plan, shard step, ordered decisions, commit. No Prefect, MLflow, Typer or Rich.

``run_job`` runs all of it; executors (``flows.executors``) decide where the
shard step runs.
"""
