"""Evaluation stage: evaluating a run, the generalisation protocol, baselines, the rater
ceiling, reason evaluation, pooling comparisons. May train (compare, generalisation)."""
