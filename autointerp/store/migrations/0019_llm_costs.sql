-- Cost accounting (issue 19): the prompt tokens a backend's prefix cache served, and what each explain
-- strategy (single, best-of-k, refined) spent per purpose, per latent and in total.
--   cached_tokens: as the backend reports it (OpenAI-compatible usage.prompt_tokens_details.cached_tokens,
--     vLLM's num_cached_tokens); NULL when it reports nothing (the local backend runs no prefix cache).
--   cached_tokens_estimate: the call's prompt tokens times the share of its messages (as text) that an
--     earlier call for the same latent in the same run began with: what a prefix cache could have served.
--     An estimate, kept beside the reported figure; NULL for failed calls and calls logged before 0019.
ALTER TABLE llm_calls ADD COLUMN cached_tokens INTEGER;
ALTER TABLE llm_calls ADD COLUMN cached_tokens_estimate INTEGER;

-- One row per run and purpose; per-latent figures divide by the latents the calls were for (an item
-- 'latent 12 detection batch 0' is latent 12's). strategy (explain runs): 'single', 'best_of_k K',
-- 'refined R' or 'refined R of best_of_k K', from the run's configuration (candidates, refine); NULL for
-- other stages. cached_tokens counts what backends
-- reported and, where a call reported nothing, its estimate; cached_tokens_estimated is the estimated part.
CREATE VIEW llm_costs AS
WITH strategies AS (
    SELECT
        run_id,
        stage,
        CASE
            WHEN stage <> 'explain' THEN NULL
            WHEN coalesce(TRY_CAST(json_extract_string(config, '$.refine') AS INTEGER), 0) > 0
                THEN 'refined ' || CAST(json_extract_string(config, '$.refine') AS INTEGER)
                    || CASE WHEN coalesce(TRY_CAST(json_extract_string(config, '$.candidates') AS INTEGER), 1) > 1
                            THEN ' of best_of_k ' || CAST(json_extract_string(config, '$.candidates') AS INTEGER)
                            ELSE '' END
            WHEN coalesce(TRY_CAST(json_extract_string(config, '$.candidates') AS INTEGER), 1) > 1
                THEN 'best_of_k ' || CAST(json_extract_string(config, '$.candidates') AS INTEGER)
            ELSE 'single'
        END AS strategy
    FROM runs
)
SELECT
    c.run_id,
    s.stage,
    s.strategy,
    c.purpose,
    any_value(c.model) AS model,
    count(DISTINCT c.latent_key) AS latents,
    count(*) AS calls,
    count(c.error) AS failed_calls,
    CAST(coalesce(sum(c.prompt_tokens), 0) AS BIGINT) AS prompt_tokens,
    CAST(coalesce(sum(c.completion_tokens), 0) AS BIGINT) AS completion_tokens,
    CAST(coalesce(sum(coalesce(c.cached_tokens, c.cached_tokens_estimate)), 0) AS BIGINT) AS cached_tokens,
    CAST(coalesce(sum(c.cached_tokens_estimate) FILTER (WHERE c.cached_tokens IS NULL), 0) AS BIGINT)
        AS cached_tokens_estimated,
    count(*) / count(DISTINCT c.latent_key) AS calls_per_latent,
    coalesce(sum(c.prompt_tokens), 0) / count(DISTINCT c.latent_key) AS prompt_tokens_per_latent,
    coalesce(sum(c.completion_tokens), 0) / count(DISTINCT c.latent_key) AS completion_tokens_per_latent,
    coalesce(sum(coalesce(c.cached_tokens, c.cached_tokens_estimate)), 0) / count(DISTINCT c.latent_key)
        AS cached_tokens_per_latent,
    min(c.created_at) AS first_call_at,
    max(c.created_at) AS last_call_at
FROM (
    SELECT *, coalesce(nullif(regexp_extract(item, '^latent -?[0-9]+', 0), ''), item) AS latent_key FROM llm_calls
) c
LEFT JOIN strategies s USING (run_id)
GROUP BY c.run_id, s.stage, s.strategy, c.purpose;
