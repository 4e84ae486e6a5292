"""The explain stage: explainers of latents (``explainers.EXPLAINERS``), prompt rendering, answer
parsing, and the stage itself (``stage.explain``)."""
