-- The output side in the summary (issue 16 items 3 and 4): latent_summary gains Arad et al.'s input_score and
-- output_score and Gur-Arieh et al.'s output_choice, each with its interval, sample size and scorer
-- configuration, and `steering_candidates` ranks latents by output score with their promoted tokens.
--
-- Which rows: as in 0008, except for input_score and output_score. They are computed from the decoder
-- direction and the subject model alone, never from the explanation, so the stage stores the same number
-- under each explanation it scored; the summary shows the latent's latest scored row of these two whichever
-- explanation it was stored under, so a new explanation does not hide them until they are scored again.
-- Their chance level (a random direction of the same norm, scored the same way) differs per latent and is
-- shown beside them (<scorer>_chance, from scores.chance.score).

DROP VIEW latent_summary;
DROP VIEW latent_summary_live;
DROP TABLE latent_summary_rows;

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
           s.chance, e.config_hash AS explainer_config
    FROM score_rows s JOIN latest e ON s.latent = e.latent AND s.explanation_id = e.explanation_id
    WHERE s.control = '' AND s.status = 'scored' AND s.scorer NOT IN ('input_score', 'output_score')
    QUALIFY row_number() OVER (PARTITION BY s.latent, s.scorer ORDER BY s.created_at DESC, s.config_hash DESC) = 1
    UNION ALL
    -- explanation-independent scorers: the latest scored row of the latent, whichever explanation
    SELECT s.latent, s.scorer, s.config_hash, s.score, s.auroc, s.ci_low, s.ci_high, s.n_examples, s.created_at,
           s.chance, NULL AS explainer_config
    FROM score_rows s
    WHERE s.control = '' AND s.status = 'scored' AND s.scorer IN ('input_score', 'output_score')
    QUALIFY row_number() OVER (
        PARTITION BY s.latent, s.scorer ORDER BY s.created_at DESC, s.config_hash DESC, s.explanation_id DESC) = 1
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
        max(score) FILTER (WHERE scorer = 'input_score') AS input_score,
        max(ci_low) FILTER (WHERE scorer = 'input_score') AS input_score_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'input_score') AS input_score_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'input_score') AS input_score_n,
        max(config_hash) FILTER (WHERE scorer = 'input_score') AS input_score_config,
        max(TRY_CAST(json_extract(chance, '$.score') AS DOUBLE)) FILTER (WHERE scorer = 'input_score')
            AS input_score_chance,
        max(score) FILTER (WHERE scorer = 'output_score') AS output_score,
        max(ci_low) FILTER (WHERE scorer = 'output_score') AS output_score_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'output_score') AS output_score_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'output_score') AS output_score_n,
        max(config_hash) FILTER (WHERE scorer = 'output_score') AS output_score_config,
        max(TRY_CAST(json_extract(chance, '$.score') AS DOUBLE)) FILTER (WHERE scorer = 'output_score')
            AS output_score_chance,
        max(score) FILTER (WHERE scorer = 'output_choice') AS output_choice_score,
        max(ci_low) FILTER (WHERE scorer = 'output_choice') AS output_choice_ci_low,
        max(ci_high) FILTER (WHERE scorer = 'output_choice') AS output_choice_ci_high,
        max(n_examples) FILTER (WHERE scorer = 'output_choice') AS output_choice_n,
        max(config_hash) FILTER (WHERE scorer = 'output_choice') AS output_choice_config,
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
        max(score) FILTER (WHERE scorer = 'output_choice') AS output_choice_control,
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
       s.intervention_surprisal_ci_high, s.intervention_surprisal_n, s.intervention_surprisal_config,
       s.input_score, s.input_score_ci_low, s.input_score_ci_high, s.input_score_n, s.input_score_config,
       s.input_score_chance, s.output_score, s.output_score_ci_low, s.output_score_ci_high, s.output_score_n,
       s.output_score_config, s.output_score_chance, s.output_choice_score, c.output_choice_control,
       s.output_choice_ci_low, s.output_choice_ci_high, s.output_choice_n, s.output_choice_config
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
    intervention_surprisal_config VARCHAR,
    input_score DOUBLE,
    input_score_ci_low DOUBLE,
    input_score_ci_high DOUBLE,
    input_score_n INTEGER,
    input_score_config VARCHAR,
    input_score_chance DOUBLE,
    output_score DOUBLE,
    output_score_ci_low DOUBLE,
    output_score_ci_high DOUBLE,
    output_score_n INTEGER,
    output_score_config VARCHAR,
    output_score_chance DOUBLE,
    output_choice_score DOUBLE,
    output_choice_control DOUBLE,
    output_choice_ci_low DOUBLE,
    output_choice_ci_high DOUBLE,
    output_choice_n INTEGER,
    output_choice_config VARCHAR
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
       intervention_surprisal_ci_high, intervention_surprisal_n, intervention_surprisal_config,
       input_score, input_score_ci_low, input_score_ci_high, input_score_n, input_score_config, input_score_chance,
       output_score, output_score_ci_low, output_score_ci_high, output_score_n, output_score_config,
       output_score_chance, output_choice_score, output_choice_control, output_choice_ci_low, output_choice_ci_high,
       output_choice_n, output_choice_config
FROM latent_summary_rows;

-- Steering-ready latents (Arad et al.): every latent with an output score, strongest first, beside what else
-- says it steers well (its input score, the intervention scores, Gur-Arieh et al.'s output_choice), its
-- explanation and the first five tokens its decoder direction promotes through the logit lens
-- (latent_logits, rank order). A latent whose lens does not apply has NULL promoted_tokens and the reason
-- in lens_note.
CREATE VIEW steering_candidates AS
WITH lens AS (
    SELECT latent,
           list(token ORDER BY rank) FILTER (WHERE sign = 'promoted' AND rank < 5) AS promoted_tokens,
           any_value(note) FILTER (WHERE sign IS NULL) AS lens_note
    FROM latent_logits GROUP BY latent
)
SELECT row_number() OVER (ORDER BY s.output_score DESC, s.latent) AS candidate_rank, s.latent, s.output_score,
       s.output_score_chance, s.input_score, s.input_score_chance, s.output_choice_score, s.intervention_score,
       s.intervention_choice_score, s.intervention_surprisal_score, s.explanation,
       CASE WHEN len(p.promoted_tokens) > 0 THEN p.promoted_tokens END AS promoted_tokens, p.lens_note,
       s.frequency, s.output_score_config
FROM latent_summary s LEFT JOIN lens p ON p.latent = s.latent
WHERE s.output_score IS NOT NULL
ORDER BY candidate_rank;
