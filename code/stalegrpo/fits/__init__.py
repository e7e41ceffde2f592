"""The fits of the scaling laws, by concern (docs/method.md §8).

- :mod:`stalegrpo.fits.laws`: the statistics (bias slope, T_c·η CV, η*(S, T) with censoring, the
  min(a/S, b/T) frontier) and :func:`~stalegrpo.fits.laws.summarize_exact` for one grid;
- :mod:`stalegrpo.fits.lm`: which language-model runs each comparison uses, and their fits;
- :mod:`stalegrpo.fits.report`: JSON and the paper's LaTeX macros.
"""
