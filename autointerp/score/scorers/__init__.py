"""The scorers, one object each behind ``score.base.Scorer``; ``score.registry`` lists them."""
