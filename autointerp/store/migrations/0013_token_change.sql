-- TokenChange: per latent, the next tokens whose mean log-probability rises (promoted) and falls
-- (suppressed) most when its decoder direction is added at every position of neutral windows.
-- Written by `autointerp explain --explainer tokenchange|ensemble`, once per (latent, config_hash),
-- and reused by every later run with the same settings.

CREATE TABLE token_change (
    run_id VARCHAR NOT NULL,         -- the explain run that computed it
    latent INTEGER NOT NULL,
    config_hash VARCHAR NOT NULL,    -- collect run, windows, scale rule, k: what shaped the ranking
    sign VARCHAR NOT NULL,           -- 'promoted' | 'suppressed'
    rank INTEGER NOT NULL,           -- 0 = the largest rise (promoted) or fall (suppressed)
    token_id INTEGER NOT NULL,
    token VARCHAR NOT NULL,          -- the token decoded on its own
    value DOUBLE NOT NULL,           -- mean change of log-probability, in nats
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (latent, config_hash, sign, rank)
);
