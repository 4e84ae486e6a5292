-- Best-of-k and refinement (issue 19 items 3-5): every candidate explanation and every revision of a
-- latent, with its score on the validate split only (never the test split, which `autointerp score`
-- reads), and which selection produced each explanation.

CREATE TABLE explanation_candidates (
    latent INTEGER NOT NULL,
    config_hash VARCHAR NOT NULL,      -- the explanation_rows row (latent, config_hash) chosen among them
    round INTEGER NOT NULL,            -- 0 for the initial candidates, r >= 1 for refinement round r
    candidate INTEGER NOT NULL,        -- index among the round's candidates (0 in refinement rounds)
    run_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,           -- 'explained', 'unparsed', 'failed'
    explanation VARCHAR,
    reason VARCHAR,                    -- why it has no explanation or no validation score
    validation_score DOUBLE,           -- detection balanced accuracy or embedding AUROC on the validate split
    validation_n INTEGER,              -- validate contexts scored
    kept BOOLEAN NOT NULL,             -- round 0: the round's best; round r: better than the best before it
    chosen BOOLEAN NOT NULL,           -- the explanation stored in explanation_rows
    call_id BIGINT,                    -- the llm_calls row that wrote it
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (latent, config_hash, round, candidate)
);

-- 'single' (one request, no selection), 'best_of_k' (an initial candidate chosen on the validate split)
-- or 'refined' (a kept refinement revision).
ALTER TABLE explanation_rows ADD COLUMN selection VARCHAR DEFAULT 'single';

CREATE OR REPLACE VIEW explanations AS
SELECT latent, explanation, explainer, model, config_hash, prompt_tokens, completion_tokens, created_at, run_id,
       status, reason, call_id, n_calls, selection
FROM explanation_rows;

-- Each score with the selection that produced the explanation it scored (NULL where no explanation row matches).
CREATE OR REPLACE VIEW scores AS
SELECT s.latent, s.explanation_id, s.scorer, s.model, s.config_hash, s.n_examples, s.score, s.balanced_accuracy,
       s.accuracy, s.precision, s.recall, s.f1, s.auroc, s.correlation, s.quantile_recall, s.chance, s.created_at,
       s.run_id, s.control, s.status, s.reason, s.n_unscored, s.n_calls, s.prompt_tokens, s.completion_tokens,
       s.fixed_prompt_tokens, s.detail, s.n_positive, s.n_negative, s.ci_low, s.ci_high, s.ci_method, x.selection
FROM score_rows s
LEFT JOIN explanation_rows x ON x.latent = s.latent AND s.explanation_id = x.config_hash || '/' || x.latent;
