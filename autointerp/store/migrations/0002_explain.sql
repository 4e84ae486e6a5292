-- Explain stage: the LLM call log and the explanations.

CREATE SEQUENCE llm_call_ids START 1;

-- Every LLM call (each attempt), successful or not: the audit trail and the resume cache.
CREATE TABLE llm_calls (
    call_id BIGINT PRIMARY KEY DEFAULT nextval('llm_call_ids'),
    run_id VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,          -- 'explain', later the scorers
    item VARCHAR NOT NULL,             -- what the call was for, e.g. 'latent 12'
    backend VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    request_hash VARCHAR NOT NULL,     -- hash of backend, model, messages and options
    messages JSON NOT NULL,            -- the prompt as chat messages
    options JSON NOT NULL,             -- max_tokens, temperature, logprobs
    response VARCHAR,                  -- the answer's text (NULL when the call failed)
    logprobs JSON,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s DOUBLE NOT NULL,
    attempt INTEGER NOT NULL,          -- 1 for the first try, 2 for the first retry, ...
    error VARCHAR,                     -- why the call failed (NULL on success)
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE explanation_rows (
    latent INTEGER NOT NULL,
    config_hash VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    explainer VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    status VARCHAR NOT NULL,           -- 'explained', 'unparsed', 'failed'
    explanation VARCHAR,
    reason VARCHAR,
    answer VARCHAR,
    call_id BIGINT,
    n_calls INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (latent, config_hash)
);

CREATE VIEW explanations AS
SELECT latent, explanation, explainer, model, config_hash, prompt_tokens, completion_tokens, created_at, run_id,
       status, reason, call_id, n_calls
FROM explanation_rows;
