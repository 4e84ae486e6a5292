-- Hard negatives (issue 19 item 2): examples of kind 'hard' are non-activating windows chosen because
-- they look like the latent's activating contexts. `similarity` is what chose them (an embedding
-- cosine for hard_by 'meaning', a decoder cosine for 'neighbours'); both are NULL on other kinds.

ALTER TABLE latent_examples ADD COLUMN similarity DOUBLE;
ALTER TABLE latent_examples ADD COLUMN hard_by VARCHAR;

CREATE OR REPLACE VIEW examples AS
SELECT e.latent, e.split, e.kind, e.quantile, e.rank, e.context_id, c.tokens, c.token_ids, e.activations,
       e.max_activation, c.sequence_id, c.start_pos, e.run_id, e.document_id, e.similarity, e.hard_by
FROM latent_examples e JOIN contexts c USING (context_id);
