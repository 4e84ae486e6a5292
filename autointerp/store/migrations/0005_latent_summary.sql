-- One row per latent: its statistics, its latest explanation and that explanation's scores, one column per
-- scorer. Computing it from the tables takes seconds at 1M latents (a group-by over every score row), so
-- `latent_summary` reads a stored copy, `latent_summary_rows`, which the writers refresh
-- (autointerp/store/summary.py); `latent_summary_live` is the definition, computed at query time.

CREATE VIEW latent_summary_live AS
SELECT l.latent, l.hookpoint, l.status, l.frequency, l.n_firing, l.max_activation, l.mean_activation,
       l.n_active_contexts,
       e.explanation, e.explanation_id, e.explainer, e.model AS explainer_model, e.created_at AS explained_at,
       coalesce(a.n_explanations, 0) AS n_explanations,
       CASE WHEN e.latent IS NOT NULL THEN 'explained' ELSE a.latest_status END AS explanation_status,
       s.detection_score, s.fuzzing_score, s.embedding_score, s.simulation_score, s.intervention_score,
       s.intervention_choice_score, s.intervention_surprisal_score,
       c.detection_control, c.fuzzing_control, s.detection_auroc, s.fuzzing_auroc,
       greatest(s.scored_at, c.scored_at) AS scored_at
FROM latent_stats l
-- the latest explanation: the most recent 'explained' row; the latest status of any row when none is
LEFT JOIN (
    SELECT latent, count(*) FILTER (WHERE status = 'explained') AS n_explanations,
           arg_max(status, created_at) AS latest_status,
           arg_max(config_hash, created_at) FILTER (WHERE status = 'explained') AS config_hash
    FROM explanation_rows GROUP BY latent
) a ON a.latent = l.latent
LEFT JOIN (
    SELECT x.*, x.config_hash || '/' || x.latent AS explanation_id FROM explanation_rows x
) e ON e.latent = a.latent AND e.config_hash = a.config_hash
-- its scores: per scorer, the latest scored row over the scorer configurations
LEFT JOIN (
    SELECT latent, explanation_id,
        arg_max(score, created_at) FILTER (WHERE scorer = 'detection') AS detection_score,
        arg_max(score, created_at) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_score,
        arg_max(score, created_at) FILTER (WHERE scorer = 'embedding') AS embedding_score,
        arg_max(score, created_at) FILTER (WHERE scorer = 'simulation') AS simulation_score,
        arg_max(score, created_at) FILTER (WHERE scorer = 'intervention') AS intervention_score,
        arg_max(score, created_at) FILTER (WHERE scorer = 'intervention_choice') AS intervention_choice_score,
        arg_max(score, created_at) FILTER (WHERE scorer = 'intervention_surprisal') AS intervention_surprisal_score,
        arg_max(auroc, created_at) FILTER (WHERE scorer = 'detection') AS detection_auroc,
        arg_max(auroc, created_at) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_auroc,
        max(created_at) AS scored_at
    FROM score_rows WHERE status = 'scored' AND control = ''
    GROUP BY latent, explanation_id
) s ON s.latent = e.latent AND s.explanation_id = e.explanation_id
-- the shuffled-explanation control: the latest scored row per scorer, whichever explanation it borrowed
LEFT JOIN (
    SELECT latent,
        arg_max(score, created_at) FILTER (WHERE scorer = 'detection') AS detection_control,
        arg_max(score, created_at) FILTER (WHERE scorer = 'fuzzing') AS fuzzing_control,
        max(created_at) FILTER (WHERE scorer IN ('detection', 'fuzzing')) AS scored_at
    FROM score_rows WHERE status = 'scored' AND control = 'shuffled' GROUP BY latent
) c ON c.latent = l.latent;

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
    scored_at TIMESTAMP
);

-- What latent_summary_rows was computed from: when these differ from the tables' (see summary.py's
-- FINGERPRINT, the same query), the copy is stale.
CREATE TABLE latent_summary_state (
    explanation_rows BIGINT NOT NULL,    -- count(*) of explanation_rows
    explanations_at TIMESTAMP,           -- their latest created_at
    score_rows BIGINT NOT NULL,          -- count(*) of score_rows
    scores_at TIMESTAMP,                 -- their latest created_at
    collect_runs VARCHAR,                -- the collect runs behind latent_stats
    refreshed_at TIMESTAMP NOT NULL
);

INSERT INTO latent_summary_rows SELECT * FROM latent_summary_live;

INSERT INTO latent_summary_state
SELECT (SELECT count(*) FROM explanation_rows), (SELECT max(created_at) FROM explanation_rows),
       (SELECT count(*) FROM score_rows), (SELECT max(created_at) FROM score_rows),
       (SELECT string_agg(run_id, ',' ORDER BY run_id) FROM collections), now();

CREATE VIEW latent_summary AS
SELECT latent, hookpoint, status, frequency, n_firing, max_activation, mean_activation, n_active_contexts,
       explanation, explanation_id, explainer, explainer_model, explained_at, n_explanations, explanation_status,
       detection_score, fuzzing_score, embedding_score, simulation_score, intervention_score,
       intervention_choice_score, intervention_surprisal_score, detection_control, fuzzing_control,
       detection_auroc, fuzzing_auroc, scored_at
FROM latent_summary_rows;
