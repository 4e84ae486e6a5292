"""Scale-out on Ray: ``RayExecutor`` runs sharded collect (``shards``) and serves the LLM calls of
explain and score from Ray workers (``llm_pool``); ``cluster`` joins or starts the Ray cluster."""

from .ray_executor import RayExecutor, make_executor

__all__ = ["RayExecutor", "make_executor"]
