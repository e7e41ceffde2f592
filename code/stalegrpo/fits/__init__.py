"""The fits of the scaling laws, by concern (docs/method.md §8).

- :mod:`stalegrpo.fits.laws`: the statistics of F1 and F2 (bias slope, T_c·η CV, with
  censoring and the hierarchical bootstrap) and :func:`~stalegrpo.fits.laws.summarize_exact`,
  all fits of one grid;
- :mod:`stalegrpo.fits.frontier`: F3, η*(S, T) with censoring, the min(a/S, b/T) frontier and
  its bootstrap over seeds;
- :mod:`stalegrpo.fits.lm`: which language-model runs each comparison uses, and their fits;
- :mod:`stalegrpo.fits.report`: JSON and the paper's LaTeX macros;
- :mod:`stalegrpo.fits.report_lm`: the LM comparisons' macros, tables and sentences;
- :mod:`stalegrpo.fits.verdicts`: what each fit lets the paper say.
"""
