-- The ground truth of planted latents (--sae planted:FILE, --planted FILE; docs/planted.md): one row per
-- planted latent of a collect run, written in the collect's transaction and deleted with it.

CREATE TABLE planted_latents (
    run_id VARCHAR NOT NULL,          -- the collect run
    latent INTEGER NOT NULL,          -- index among the collect's latents (after a real SAE's own)
    rule JSON NOT NULL,               -- the rule as the file states it: {"family": ..., ...}
    description VARCHAR NOT NULL,     -- the ground truth an explanation should find
    family VARCHAR NOT NULL,          -- word_list, gated, structural, semantic
    target_density DOUBLE NOT NULL,   -- asked-for firing density per counted token, in (0, 1)
    fidelity DOUBLE NOT NULL,         -- asked-for share of activations that follow the rule, in [0, 1]
    magnitude JSON NOT NULL,          -- the activation distribution: {"distribution": "lognormal", "mu", "sigma"}, ...
    rule_density DOUBLE NOT NULL,     -- share of counted tokens where the rule holds (calibration)
    expected_density DOUBLE NOT NULL, -- density the thinning aims at: the target, or less where the rule is rarer
    density_reached BOOLEAN NOT NULL, -- false: the rule holds too rarely for target x fidelity (a warning was logged)
    achieved_density DOUBLE NOT NULL, -- measured: latent_stats.frequency of this collect
    PRIMARY KEY (run_id, latent)
);
