-- Every real score next to its control, paired on the same latent, explainer configuration and scorer
-- configuration (issue 15 items 9, 10, 12). A control row's explanation_id names the explanation it used
-- (shuffled: the partner's, '<explainer config>/<partner>'; empty: the one it stands in for), so its
-- explainer configuration is the part before the last '/'. Per (latent, explainer configuration, scorer,
-- scorer configuration, control) the latest scored control row is taken, explicitly by created_at
-- (a row_number window, not arg_max, which skips NULL scores and would fall back to an older row);
-- an unscored row on either side leaves no pair.

CREATE VIEW control_gaps AS
WITH real AS (
    SELECT latent, scorer, config_hash, explanation_id, score, created_at,
           regexp_replace(explanation_id, '/[^/]*$', '') AS explainer_config
    FROM score_rows WHERE control = '' AND status = 'scored' AND score IS NOT NULL
),
ctrl AS (
    SELECT latent, scorer, config_hash, control, explanation_id, score, status, created_at,
           regexp_replace(explanation_id, '/[^/]*$', '') AS explainer_config
    FROM score_rows WHERE control <> ''
    QUALIFY row_number() OVER (
        PARTITION BY latent, regexp_replace(explanation_id, '/[^/]*$', ''), scorer, config_hash, control
        ORDER BY created_at DESC, explanation_id) = 1
)
SELECT r.latent, r.scorer, r.explainer_config, r.config_hash AS scorer_config, r.explanation_id, r.score,
       c.control, c.explanation_id AS control_explanation_id, c.score AS control_score,
       r.score - c.score AS gap, r.created_at AS scored_at, c.created_at AS control_scored_at
FROM real r JOIN ctrl c
  ON c.latent = r.latent AND c.explainer_config = r.explainer_config AND c.scorer = r.scorer
 AND c.config_hash = r.config_hash
WHERE c.status = 'scored' AND c.score IS NOT NULL;
