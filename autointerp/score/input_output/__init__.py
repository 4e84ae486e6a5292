"""Arad et al.'s input and output scores: pure metrics (``metrics``) and the per-run output side of
each latent (``store``), shared by the ``input_score`` and ``output_score`` scorers."""
