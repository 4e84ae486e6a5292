-- Similar latents within one SAE (issue 18): each latent's nearest latents by decoder cosine, and a view
-- that sets them beside the similarity of their explanations and their firing frequencies.
-- Written by `autointerp collect` (after its results, beside the logit lens) and `autointerp similar`.

CREATE TABLE decoder_neighbours (
    run_id VARCHAR NOT NULL,      -- the collect run whose dictionary was read
    latent INTEGER NOT NULL,      -- index among the collect's latents
    rank INTEGER NOT NULL,        -- 0-based: 0 is the nearest other latent
    neighbour INTEGER NOT NULL,   -- the other latent
    decoder_cos DOUBLE NOT NULL   -- cosine of the two decoder directions (ranked by |cos| for a signed dictionary)
);

-- Public: the current collect's neighbours, each pair with the cosine of the two latents' latest
-- explanations (under the most recently used sentence encoder; NULL when either has no current
-- embedding) and a relation. Thresholds (docs/schema.md, "similar_latents"):
--   near_duplicate:  |decoder_cos| >= 0.7 and explanation_sim >= 0.75
--   split_candidate: the pair (broad latent, narrower other) where the broad latent has at least two
--                    neighbours with |decoder_cos| >= 0.3, explanation_sim >= 0.4 and a lower frequency;
--                    this row is one of them (and not a near duplicate)
--   neighbour:       every other row.
CREATE VIEW similar_latents AS
WITH current_collect AS (
    SELECT run_id FROM runs WHERE stage = 'collect' AND status = 'complete' ORDER BY started_at DESC LIMIT 1
),
encoder AS (
    SELECT encoder FROM explanation_embeddings ORDER BY created_at DESC, encoder LIMIT 1
),
latest AS (
    SELECT latent, arg_max(config_hash, created_at) AS config_hash
    FROM explanation_rows WHERE status = 'explained' AND explanation IS NOT NULL GROUP BY latent
),
explained AS (
    SELECT x.latent, x.explanation, e.embedding
    FROM latest l JOIN explanation_rows x USING (latent, config_hash)
    LEFT JOIN explanation_embeddings e ON e.latent = x.latent AND e.config_hash = x.config_hash
         AND e.encoder = (SELECT encoder FROM encoder) AND e.text_hash = md5(x.explanation)
),
frequencies AS (
    SELECT latent, frequency FROM latent_stats WHERE run_id = (SELECT run_id FROM current_collect)
),
pairs AS (
    SELECT n.latent, n.rank, n.neighbour AS other, n.decoder_cos,
           array_cosine_similarity(a.embedding, b.embedding)::DOUBLE AS explanation_sim,
           fa.frequency, fb.frequency AS other_frequency, a.explanation, b.explanation AS other_explanation
    FROM decoder_neighbours n
    LEFT JOIN explained a ON a.latent = n.latent
    LEFT JOIN explained b ON b.latent = n.neighbour
    LEFT JOIN frequencies fa ON fa.latent = n.latent
    LEFT JOIN frequencies fb ON fb.latent = n.neighbour
    WHERE n.run_id = (SELECT run_id FROM current_collect)
),
flagged AS (
    SELECT *,
           abs(decoder_cos) >= 0.7 AND explanation_sim >= 0.75 AS duplicate,
           abs(decoder_cos) >= 0.3 AND explanation_sim >= 0.4 AND other_frequency < frequency AS narrower
    FROM pairs
)
SELECT latent, other, rank,
       CASE WHEN duplicate THEN 'near_duplicate'
            WHEN narrower AND count(*) FILTER (WHERE narrower AND NOT duplicate) OVER (PARTITION BY latent) >= 2
                 THEN 'split_candidate'
            ELSE 'neighbour' END AS relation,
       decoder_cos, explanation_sim, frequency, other_frequency, explanation, other_explanation
FROM flagged;
