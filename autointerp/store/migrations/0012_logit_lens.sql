-- The logit lens of every latent (shared/specs/intervention-and-output-scores.md, section A step 0 and
-- section C VocabProj): the top and bottom k tokens of its decoder direction through the final norm and
-- the unembedding. Written by `autointerp collect` (after its results) and `autointerp lens`; a latent
-- where the lens does not apply has one row with the reason in `note` and the rest NULL.

CREATE TABLE logit_lens (
    run_id VARCHAR NOT NULL,  -- the collect run whose model and dictionary were read
    latent INTEGER NOT NULL,  -- index among the collect's latents
    sign VARCHAR,             -- 'promoted' (largest logits) or 'suppressed' (smallest); NULL on a note row
    rank INTEGER,             -- 0-based within the sign: 0 is the most promoted (or most suppressed) token
    token_id INTEGER,
    token VARCHAR,            -- the token decoded on its own
    value DOUBLE,             -- the logit W_U . norm(d_latent), no decoder bias, no softcap
    note VARCHAR              -- why the lens does not apply to this latent (NULL on a ranking row)
);

-- Public: the lens of the current collect (the latest complete one) only.
CREATE VIEW latent_logits AS
SELECT latent, sign, rank, token, token_id, value, note
FROM logit_lens
WHERE run_id = (
    SELECT run_id FROM runs WHERE stage = 'collect' AND status = 'complete' ORDER BY started_at DESC LIMIT 1
);
