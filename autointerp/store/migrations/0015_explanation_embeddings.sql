-- Explanation embeddings (issue 18): one sentence embedding per explanation and encoder, for search by
-- meaning and for comparing SAEs through their explanations. Derived data: recomputed from
-- explanation_rows whenever missing or stale (text_hash), never the only copy of anything.
-- The vector is a fixed-size FLOAT[384] (all-MiniLM-L6-v2, the default encoder) so that DuckDB's array
-- functions (array_cosine_similarity, array_inner_product) apply; autointerp/similarity/embeddings.py
-- recreates the table with another width when an encoder of another width is chosen.
CREATE TABLE explanation_embeddings (
    latent INTEGER NOT NULL,
    config_hash VARCHAR NOT NULL,      -- with latent, the explanation: explanation_rows' key
    encoder VARCHAR NOT NULL,          -- model_digest of the sentence encoder's folder
    text_hash VARCHAR NOT NULL,        -- md5 of the embedded text: a changed text is embedded again
    embedding FLOAT[384] NOT NULL,     -- L2-normalised: the inner product is the cosine
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (latent, config_hash, encoder)
);
