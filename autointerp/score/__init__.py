"""The score stage: scorers of explanations and the metrics they report."""
