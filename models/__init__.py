"""Predictors (roofline, efficiency gap, forest): see issue 4."""
