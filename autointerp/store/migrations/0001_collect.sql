-- Sample stage: runs, contexts, per-latent examples and statistics, and the public views.

CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,      -- unique id of one invocation of a stage
    stage VARCHAR NOT NULL,          -- 'collect', later 'explain', 'score'
    config JSON NOT NULL,            -- the resolved configuration
    config_hash VARCHAR NOT NULL,    -- hash of the fields that shape the result
    status VARCHAR NOT NULL,         -- 'running', 'complete', 'failed'
    error VARCHAR,                   -- why a failed run failed
    pid INTEGER,                     -- process that ran it (to tell a live run from a crashed one)
    host VARCHAR,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    summary JSON                     -- measured figures: tokens, seconds, tokens/s
);

-- One row per collect run: what was read and how the histogram is binned.
CREATE TABLE collections (
    run_id VARCHAR PRIMARY KEY,
    model VARCHAR NOT NULL,
    hookpoint VARCHAR NOT NULL,
    sae VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    n_latents INTEGER NOT NULL,
    n_sequences BIGINT NOT NULL,
    n_tokens BIGINT NOT NULL,        -- positions that counted (first position and special tokens excluded)
    seq_len INTEGER NOT NULL,
    window_len INTEGER NOT NULL,
    histogram_edges DOUBLE[] NOT NULL
);

-- Token windows, stored once whichever latents use them. context_id = sequence_id * seq_len + start_pos.
CREATE TABLE contexts (
    context_id BIGINT NOT NULL,
    run_id VARCHAR NOT NULL,
    sequence_id BIGINT NOT NULL,
    start_pos INTEGER NOT NULL,
    token_ids INTEGER[] NOT NULL,
    tokens VARCHAR[] NOT NULL
);

CREATE TABLE latent_stats (
    run_id VARCHAR NOT NULL,
    latent INTEGER NOT NULL,
    hookpoint VARCHAR NOT NULL,
    n_firing BIGINT NOT NULL,
    n_tokens BIGINT NOT NULL,
    frequency DOUBLE NOT NULL,
    max_activation FLOAT NOT NULL,
    mean_activation FLOAT,
    n_active_contexts BIGINT NOT NULL,
    histogram BIGINT[] NOT NULL,
    quantile_edges FLOAT[] NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR
);

CREATE TABLE latent_examples (
    run_id VARCHAR NOT NULL,
    latent INTEGER NOT NULL,
    split VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    quantile SMALLINT,
    rank INTEGER NOT NULL,
    context_id BIGINT NOT NULL,
    activations FLOAT[] NOT NULL,
    max_activation FLOAT NOT NULL
);

CREATE VIEW latents AS
SELECT s.latent, s.hookpoint, s.n_firing, s.frequency, s.max_activation, s.mean_activation, s.status,
       s.reason, s.n_active_contexts, s.n_tokens, s.histogram, c.histogram_edges, s.quantile_edges, s.run_id
FROM latent_stats s JOIN collections c USING (run_id);

CREATE VIEW examples AS
SELECT e.latent, e.split, e.kind, e.quantile, e.rank, e.context_id, c.tokens, c.token_ids, e.activations,
       e.max_activation, c.sequence_id, c.start_pos, e.run_id
FROM latent_examples e JOIN contexts c USING (context_id);
