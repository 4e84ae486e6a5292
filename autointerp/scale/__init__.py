"""Scale-out on Ray: sharded collect (``collect_shards``) and Ray workers that serve the LLM calls of
explain and score (``llm_pool``). ``cluster`` joins or starts the Ray cluster."""
