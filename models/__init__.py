"""Predictors (roofline, efficiency gap, forest): docs/models.md describes them."""
