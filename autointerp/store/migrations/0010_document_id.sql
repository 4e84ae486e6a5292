-- Every example records the source document of its context (issue 14 item 3): the index of the
-- document among the corpus's non-empty texts, so that a split can keep each document on one side.
-- It lives on the example, not the context: a window shared by two latents can hold their peaks in
-- two documents (a window that crosses a document boundary). Older databases read NULL.

ALTER TABLE latent_examples ADD COLUMN document_id BIGINT;

CREATE OR REPLACE VIEW examples AS
SELECT e.latent, e.split, e.kind, e.quantile, e.rank, e.context_id, c.tokens, c.token_ids, e.activations,
       e.max_activation, c.sequence_id, c.start_pos, e.run_id, e.document_id
FROM latent_examples e JOIN contexts c USING (context_id);
