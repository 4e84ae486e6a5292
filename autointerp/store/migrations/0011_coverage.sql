-- Coverage: how much of the dictionary each stage reached, per decade of firing frequency.
-- `latent_coverage` places every latent in its decade and classes why a skipped latent was skipped;
-- `coverage` counts them (one row per decade and measure; see docs/schema.md). Both are computed at
-- query time.

CREATE VIEW latent_coverage AS
WITH decades(decade_order, decade, frequency_low, frequency_high) AS (
    VALUES (0, 'dead', 0.0, 0.0),
           (1, '(0, 1e-6)', 0.0, 1e-6),
           (2, '[1e-6, 1e-5)', 1e-6, 1e-5),
           (3, '[1e-5, 1e-4)', 1e-5, 1e-4),
           (4, '[1e-4, 1e-3)', 1e-4, 1e-3),
           (5, '[1e-3, 0.01)', 1e-3, 1e-2),
           (6, '[0.01, 0.1)', 1e-2, 1e-1),
           (7, '[0.1, 1]', 1e-1, 1.0)
),
placed AS (
    SELECT s.*,
           -- comparisons with the literal edges, so a frequency of exactly 1e-5 lands in [1e-5, 1e-4)
           CASE WHEN s.n_firing = 0 THEN 0
                WHEN s.frequency < 1e-6 THEN 1
                WHEN s.frequency < 1e-5 THEN 2
                WHEN s.frequency < 1e-4 THEN 3
                WHEN s.frequency < 1e-3 THEN 4
                WHEN s.frequency < 1e-2 THEN 5
                WHEN s.frequency < 1e-1 THEN 6
                ELSE 7 END AS decade_order
    FROM latent_stats s
)
SELECT p.latent, p.hookpoint, p.frequency, p.n_firing, p.n_active_contexts, d.decade_order, d.decade,
       d.frequency_low, d.frequency_high, p.n_firing > 0 AS live, p.status, p.reason,
       -- The one place a skipped latent's free-text reason becomes a class, by the reason's prefix.
       -- Reasons in use (collect/reduce.py latent_reasons): "never fired in N counted tokens"; "N activating
       -- contexts; --min-activating is M" (or "N activating contexts gave ..."); "N non-activating windows
       -- usable; ..." (or any reason about negatives). Databases of older versions also hold "N test
       -- contexts across quantiles; ...".
       -- Adjust here when the reasons change; anything unmatched is 'other'.
       CASE WHEN p.status = 'ok' THEN NULL
            WHEN p.status = 'dead' OR p.n_firing = 0 OR lower(p.reason) LIKE 'never fired%' THEN 'dead'
            WHEN regexp_matches(lower(p.reason), '^\d[\d,]* (non-activating|clean|negative)')
                 OR lower(p.reason) LIKE '%negatives%' THEN 'too_few_negatives'
            WHEN regexp_matches(lower(p.reason), '^\d[\d,]* activating') THEN 'too_few_activating'
            WHEN regexp_matches(lower(p.reason), '^\d[\d,]* test') THEN 'too_few_test'
            ELSE 'other' END AS reason_class,
       e.latent IS NOT NULL AS explained,
       coalesce(sc.scorers, []::VARCHAR[]) AS scored_by
FROM placed p
JOIN decades d USING (decade_order)
LEFT JOIN (SELECT DISTINCT latent FROM explanation_rows WHERE status = 'explained') e ON e.latent = p.latent
LEFT JOIN (
    SELECT latent, list(DISTINCT scorer ORDER BY scorer) AS scorers
    FROM score_rows WHERE status = 'scored' AND control = '' AND scorer NOT LIKE 'cue:%' GROUP BY latent
) sc ON sc.latent = p.latent;

CREATE VIEW coverage AS
WITH c AS (SELECT * FROM latent_coverage)
SELECT decade_order, decade, frequency_low, frequency_high, measure, scorer, status, reason_class, latents
FROM (
    SELECT decade_order, decade, frequency_low, frequency_high, 'latents' AS measure, NULL::VARCHAR AS scorer,
           NULL::VARCHAR AS status, NULL::VARCHAR AS reason_class, count(*) AS latents
    FROM c GROUP BY ALL
    UNION ALL
    SELECT decade_order, decade, frequency_low, frequency_high, 'live', NULL, NULL, NULL, count(*)
    FROM c WHERE live GROUP BY ALL
    UNION ALL
    SELECT decade_order, decade, frequency_low, frequency_high, 'ok', NULL, NULL, NULL, count(*)
    FROM c WHERE status = 'ok' GROUP BY ALL
    UNION ALL
    SELECT decade_order, decade, frequency_low, frequency_high, 'explained', NULL, NULL, NULL, count(*)
    FROM c WHERE explained GROUP BY ALL
    UNION ALL
    SELECT decade_order, decade, frequency_low, frequency_high, 'scored', scorer, NULL, NULL, count(*)
    FROM (SELECT *, unnest(scored_by) AS scorer FROM c) GROUP BY ALL
    UNION ALL
    SELECT decade_order, decade, frequency_low, frequency_high, 'skipped', NULL, status, reason_class, count(*)
    FROM c WHERE status <> 'ok' GROUP BY ALL
);
