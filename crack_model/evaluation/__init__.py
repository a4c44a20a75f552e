"""How good is a model, and may it be promoted: metrics, intervals, holdout evaluation, the gate."""
