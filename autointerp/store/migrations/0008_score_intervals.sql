-- Every score with its sample size and 95% interval (issue 14 item 4), and a latent_summary keyed on
-- both the explainer and the scorer configuration, with each control paired to the same pair and the
-- intervention controls beside detection's and fuzzing's (issue 15 items 10 and 11).

ALTER TABLE score_rows ADD COLUMN n_positive INTEGER;  -- scored contexts labelled activating (docs/schema.md)
ALTER TABLE score_rows ADD COLUMN n_negative INTEGER;  -- scored contexts labelled non-activating
ALTER TABLE score_rows ADD COLUMN ci_low DOUBLE;       -- 95% interval of `score` (autointerp/score/intervals.py)
ALTER TABLE score_rows ADD COLUMN ci_high DOUBLE;
ALTER TABLE score_rows ADD COLUMN ci_method VARCHAR;   -- wilson, wilson_mover, delong, fisher_z, bootstrap

CREATE OR REPLACE VIEW scores AS
SELECT latent, explanation_id, scorer, model, config_hash, n_examples, score, balanced_accuracy, accuracy, precision,
       recall, f1, auroc, correlation, quantile_recall, chance, created_at, run_id, control, status, reason, n_unscored,
       n_calls, prompt_tokens, completion_tokens, fixed_prompt_tokens, detail, n_positive, n_negative, ci_low, ci_high,
       ci_method
FROM score_rows;

DROP VIEW latent_summary;
DROP VIEW latent_summary_live;
DROP TABLE latent_summary_rows;

-- Which rows: the latent's latest explanation (its 'explained' row with the latest created_at) fixes the
-- explainer configuration. Per scorer, the shown score is that explanation's latest row with status
-- 'scored' (ties broken by scorer config_hash), chosen explicitly by a window function: its score may be
-- NULL (a metric undefined on its sample) and then NULL is shown, never an older row's score. Its
-- scorer configuration is <scorer>_config. The control is the latest scored shuffled row of the same
-- latent, scorer and scorer configuration whose borrowed explanation has the same explainer
-- configuration. After the windows there is at most one row per (latent, scorer), so the pivots' max()
-- picks that row's value and nothing else.
CREATE VIEW latent_summary_live AS
WITH expl AS (
    SELECT latent, count(*) FILTER (WHERE status = 'explained') AS n_explanations,
           arg_max(status, created_at) AS latest_status,
           arg_max(config_hash, created_at) FILTER (WHERE status = 'explained') AS config_hash
    FROM explanation_rows GROUP BY latent
),
latest AS (
    SELECT x.*, x.config_hash || '/' || x.latent AS explanation_id
    FROM explanation_rows x JOIN expl a ON x.latent = a.latent AND x.config_hash = a.config_hash
),
shown AS (
    SELECT s.latent, s.scorer, s.config_hash, s.score, s.auroc, s.ci_low, s.ci_high, s.n_examples, s.created_at,
           e.config_hash AS explainer_config
    FROM score_rows s JOIN latest e ON s.latent = e.latent AND s.explanation_id = e.explanation_id
    WHERE s.control = '' AND s.status = 'scored'
    QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer ORDER BY s.created_at DESC, s.config_hash DESC) = 1
),
paired AS (
    SELECT c.latent, c.scorer, c.score, c.created_at
    FROM score_rows c JOIN shown r ON c.latent = r.latent AND c.scorer = r.scorer AND c.config_hash = r.config_hash
    WHERE c.control = 'shuffled' AND c.status = 'scored'
      AND starts_with(c.explanation_id, r.explainer_config || '/')
    QUALIFY row_number() OVER (PARTITION BY c.latent, c.scorer ORDER BY c.created_at DESC, c.explanation_id DESC) = 1
),
s AS (
    SELECT latent,
        max(score) FILTER (WHERE scorer = 'detection') AS detection_score,
        max(score) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_score,
        max(score) FILTER (WHERE scorer = 'embedding') AS embedding_score,
        max(score) FILTER (WHERE scorer = 'simulation') AS simulation_score,
        max(score) FILTER (WHERE scorer = 'intervention') AS intervention_score,
        max(score) FILTER (WHERE scorer = 'intervention_choice') AS intervention_choice_score,
        max(score) FILTER (WHERE scorer = 'intervention_surprisal') AS intervention_surprisal_score,
        max(auroc) FILTER (WHERE scorer = 'detection') AS detection_auroc,
        max(auroc) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_auroc,
        max(ci_low) FILTER (WHERE scorer = 'detection') AS detection_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'detection') AS detection_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'detection') AS detection_n,
        max(config_hash) FILTER (WHERE scorer = 'detection') AS detection_config,
        max(ci_low) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_n,
        max(config_hash) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_config,
        max(ci_low) FILTER (WHERE scorer = 'embedding') AS embedding_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'embedding') AS embedding_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'embedding') AS embedding_n,
        max(config_hash) FILTER (WHERE scorer = 'embedding') AS embedding_config,
        max(ci_low) FILTER (WHERE scorer = 'simulation') AS simulation_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'simulation') AS simulation_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'simulation') AS simulation_n,
        max(config_hash) FILTER (WHERE scorer = 'simulation') AS simulation_config,
        max(ci_low) FILTER (WHERE scorer = 'intervention') AS intervention_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'intervention') AS intervention_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'intervention') AS intervention_n,
        max(config_hash) FILTER (WHERE scorer = 'intervention') AS intervention_config,
        max(ci_low) FILTER (WHERE scorer = 'intervention_choice') AS intervention_choice_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'intervention_choice') AS intervention_choice_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'intervention_choice') AS intervention_choice_n,
        max(config_hash) FILTER (WHERE scorer = 'intervention_choice') AS intervention_choice_config,
        max(ci_low) FILTER (WHERE scorer = 'intervention_surprisal') AS intervention_surprisal_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'intervention_surprisal') AS intervention_surprisal_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'intervention_surprisal') AS intervention_surprisal_n,
        max(config_hash) FILTER (WHERE scorer = 'intervention_surprisal') AS intervention_surprisal_config,
        max(created_at) AS scored_at
    FROM shown GROUP BY latent
),
c AS (
    SELECT latent,
        max(score) FILTER (WHERE scorer = 'detection') AS detection_control,
        max(score) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_control,
        max(score) FILTER (WHERE scorer = 'intervention') AS intervention_control,
        max(score) FILTER (WHERE scorer = 'intervention_choice') AS intervention_choice_control,
        max(score) FILTER (WHERE scorer = 'intervention_surprisal') AS intervention_surprisal_control,
        max(created_at) AS scored_at
    FROM paired GROUP BY latent
)
SELECT l.latent, l.hookpoint, l.status, l.frequency, l.n_firing, l.max_activation, l.mean_activation,
       l.n_active_contexts,
       e.explanation, e.explanation_id, e.explainer, e.model AS explainer_model, e.created_at AS explained_at,
       coalesce(a.n_explanations, 0) AS n_explanations,
       CASE WHEN e.latent IS NOT NULL THEN 'explained' ELSE a.latest_status END AS explanation_status,
       s.detection_score, s.fuzzing_score, s.embedding_score, s.simulation_score, s.intervention_score,
       s.intervention_choice_score, s.intervention_surprisal_score,
       c.detection_control, c.fuzzing_control, s.detection_auroc, s.fuzzing_auroc,
       greatest(s.scored_at, c.scored_at) AS scored_at,
       c.intervention_control, c.intervention_choice_control, c.intervention_surprisal_control,
       s.detection_ci_low, s.detection_ci_high, s.detection_n, s.detection_config, s.fuzzing_ci_low,
       s.fuzzing_ci_high, s.fuzzing_n, s.fuzzing_config, s.embedding_ci_low, s.embedding_ci_high,
       s.embedding_n, s.embedding_config, s.simulation_ci_low, s.simulation_ci_high, s.simulation_n,
       s.simulation_config, s.intervention_ci_low, s.intervention_ci_high, s.intervention_n,
       s.intervention_config, s.intervention_choice_ci_low, s.intervention_choice_ci_high,
       s.intervention_choice_n, s.intervention_choice_config, s.intervention_surprisal_ci_low,
       s.intervention_surprisal_ci_high, s.intervention_surprisal_n, s.intervention_surprisal_config
FROM latent_stats l
LEFT JOIN expl a ON a.latent = l.latent
LEFT JOIN latest e ON e.latent = l.latent
LEFT JOIN s ON s.latent = l.latent
LEFT JOIN c ON c.latent = l.latent;

CREATE TABLE latent_summary_rows (
    latent INTEGER NOT NULL,
    hookpoint VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    frequency DOUBLE NOT NULL,
    n_firing BIGINT NOT NULL,
    max_activation FLOAT NOT NULL,
    mean_activation FLOAT,
    n_active_contexts BIGINT NOT NULL,
    explanation VARCHAR,
    explanation_id VARCHAR,
    explainer VARCHAR,
    explainer_model VARCHAR,
    explained_at TIMESTAMP,
    n_explanations BIGINT NOT NULL,
    explanation_status VARCHAR,
    detection_score DOUBLE,
    fuzzing_score DOUBLE,
    embedding_score DOUBLE,
    simulation_score DOUBLE,
    intervention_score DOUBLE,
    intervention_choice_score DOUBLE,
    intervention_surprisal_score DOUBLE,
    detection_control DOUBLE,
    fuzzing_control DOUBLE,
    detection_auroc DOUBLE,
    fuzzing_auroc DOUBLE,
    scored_at TIMESTAMP,
    intervention_control DOUBLE,
    intervention_choice_control DOUBLE,
    intervention_surprisal_control DOUBLE,
    detection_ci_low DOUBLE,
    detection_ci_high DOUBLE,
    detection_n INTEGER,
    detection_config VARCHAR,
    fuzzing_ci_low DOUBLE,
    fuzzing_ci_high DOUBLE,
    fuzzing_n INTEGER,
    fuzzing_config VARCHAR,
    embedding_ci_low DOUBLE,
    embedding_ci_high DOUBLE,
    embedding_n INTEGER,
    embedding_config VARCHAR,
    simulation_ci_low DOUBLE,
    simulation_ci_high DOUBLE,
    simulation_n INTEGER,
    simulation_config VARCHAR,
    intervention_ci_low DOUBLE,
    intervention_ci_high DOUBLE,
    intervention_n INTEGER,
    intervention_config VARCHAR,
    intervention_choice_ci_low DOUBLE,
    intervention_choice_ci_high DOUBLE,
    intervention_choice_n INTEGER,
    intervention_choice_config VARCHAR,
    intervention_surprisal_ci_low DOUBLE,
    intervention_surprisal_ci_high DOUBLE,
    intervention_surprisal_n INTEGER,
    intervention_surprisal_config VARCHAR
);

INSERT INTO latent_summary_rows SELECT * FROM latent_summary_live;

-- The copy was just recomputed: record what from (the same query as summary.py's FINGERPRINT).
DELETE FROM latent_summary_state;
INSERT INTO latent_summary_state
SELECT (SELECT count(*) FROM explanation_rows), (SELECT max(created_at) FROM explanation_rows),
       (SELECT count(*) FROM score_rows), (SELECT max(created_at) FROM score_rows),
       (SELECT string_agg(run_id, ',' ORDER BY run_id) FROM collections), now();

CREATE VIEW latent_summary AS
SELECT latent, hookpoint, status, frequency, n_firing, max_activation, mean_activation, n_active_contexts,
       explanation, explanation_id, explainer, explainer_model, explained_at, n_explanations, explanation_status,
       detection_score, fuzzing_score, embedding_score, simulation_score, intervention_score,
       intervention_choice_score, intervention_surprisal_score, detection_control, fuzzing_control,
       detection_auroc, fuzzing_auroc, scored_at,
       intervention_control, intervention_choice_control, intervention_surprisal_control, detection_ci_low,
       detection_ci_high, detection_n, detection_config, fuzzing_ci_low, fuzzing_ci_high, fuzzing_n,
       fuzzing_config, embedding_ci_low, embedding_ci_high, embedding_n, embedding_config, simulation_ci_low,
       simulation_ci_high, simulation_n, simulation_config, intervention_ci_low, intervention_ci_high,
       intervention_n, intervention_config, intervention_choice_ci_low, intervention_choice_ci_high,
       intervention_choice_n, intervention_choice_config, intervention_surprisal_ci_low,
       intervention_surprisal_ci_high, intervention_surprisal_n, intervention_surprisal_config
FROM latent_summary_rows;
