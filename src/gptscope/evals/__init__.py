"""Evaluation beyond accuracy: calibration (reliability bins, ECE, Brier, temperature
scaling), out-of-distribution scores and their AUROC / FPR@95, the diversity of generated
text (distinct-n, self-BLEU), log-likelihood multiple choice that scores the same at any
batch size or padding side, and summaries with bootstrap intervals. See docs/evals.md."""
