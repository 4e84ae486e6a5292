-- Score stage: one row per (latent, explanation, scorer, configuration) and one per scored context.

CREATE TABLE score_rows (
    latent INTEGER NOT NULL,
    explanation_id VARCHAR NOT NULL,    -- '<explainer config hash>/<latent it explains>'
    scorer VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    control VARCHAR NOT NULL,           -- '' or 'shuffled' (scored with another latent's explanation)
    run_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,            -- 'scored', 'unscored'
    reason VARCHAR,
    n_examples INTEGER NOT NULL,        -- contexts with a prediction
    n_unscored INTEGER NOT NULL,        -- contexts whose batch answer could not be read
    balanced_accuracy DOUBLE,
    accuracy DOUBLE,
    precision DOUBLE,
    recall DOUBLE,
    f1 DOUBLE,
    auroc DOUBLE,
    quantile_recall JSON,
    chance JSON NOT NULL,
    n_calls INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    fixed_prompt_tokens INTEGER NOT NULL,  -- prompt tokens a prefix cache can serve across latents
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (latent, explanation_id, scorer, config_hash, control)
);

CREATE TABLE score_example_rows (
    run_id VARCHAR NOT NULL,
    latent INTEGER NOT NULL,
    explanation_id VARCHAR NOT NULL,
    scorer VARCHAR NOT NULL,
    config_hash VARCHAR NOT NULL,
    control VARCHAR NOT NULL,
    context_id BIGINT NOT NULL,
    variant VARCHAR NOT NULL,           -- 'plain', 'correct', 'random_marks', 'misplaced_marks'
    marked INTEGER[],                   -- marked token positions (fuzzing)
    quantile SMALLINT,
    label BOOLEAN NOT NULL,
    prediction BOOLEAN,                 -- NULL: unscored
    probability DOUBLE,                 -- P(label 1) from logprobs, when the backend gives them
    batch INTEGER NOT NULL,             -- which prompt of this (latent, scorer) the context was in
    call_id BIGINT,
    reason VARCHAR                      -- why the prediction is NULL
);

CREATE VIEW scores AS
SELECT latent, explanation_id, scorer, model, config_hash, n_examples, balanced_accuracy, accuracy, precision,
       recall, f1, auroc, quantile_recall, chance, created_at, run_id, control, status, reason, n_unscored, n_calls,
       prompt_tokens, completion_tokens, fixed_prompt_tokens
FROM score_rows;

CREATE VIEW score_examples AS
SELECT latent, explanation_id, scorer, config_hash, control, context_id, label, prediction, probability, batch,
       variant, marked, quantile, call_id, reason, run_id
FROM score_example_rows;
