-- Simulation and intervention scorers: a headline number per score, the simulation's correlation,
-- scorer-specific details, per-token simulated activations, and the steered/clean completions.

ALTER TABLE score_rows ADD COLUMN score DOUBLE;        -- the scorer's headline number (see docs/schema.md)
ALTER TABLE score_rows ADD COLUMN correlation DOUBLE;  -- simulation: Pearson r pooled over all tokens
ALTER TABLE score_rows ADD COLUMN detail JSON;         -- scorer-specific extras (steering calibration, ...)

ALTER TABLE score_example_rows ADD COLUMN simulated FLOAT[];  -- simulation: predicted activation (0-10) per token

CREATE TABLE intervention_rows (
    latent INTEGER NOT NULL,
    config_hash VARCHAR NOT NULL,      -- steering configuration (subject model, hookpoint, target KL, prompts, seed)
    completion_id BIGINT NOT NULL,     -- unique per (latent, config_hash): prompt_index * 2 + steered
    prompt_index INTEGER NOT NULL,
    prompt VARCHAR NOT NULL,
    steered BOOLEAN NOT NULL,
    completion VARCHAR NOT NULL,
    scale DOUBLE,                      -- signed multiple of the decoder direction (0 for clean completions)
    target_kl DOUBLE NOT NULL,
    achieved_kl DOUBLE,                -- mean KL(clean || steered) of the next token at the calibrated scale
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (latent, config_hash, completion_id)
);

CREATE OR REPLACE VIEW scores AS
SELECT latent, explanation_id, scorer, model, config_hash, n_examples, score, balanced_accuracy, accuracy, precision,
       recall, f1, auroc, correlation, quantile_recall, chance, created_at, run_id, control, status, reason, n_unscored,
       n_calls, prompt_tokens, completion_tokens, fixed_prompt_tokens, detail
FROM score_rows;

CREATE OR REPLACE VIEW score_examples AS
SELECT latent, explanation_id, scorer, config_hash, control, context_id, label, prediction, probability, batch,
       variant, marked, quantile, simulated, call_id, reason, run_id
FROM score_example_rows;

CREATE VIEW interventions AS
SELECT latent, config_hash, completion_id, prompt_index, prompt, steered, completion, scale, target_kl, achieved_kl,
       run_id, created_at
FROM intervention_rows;
