"""stalegrpo: staleness-learning-rate scaling laws for asynchronous GRPO (arXiv:2607.01083).

One module per concept: ``objectives`` (the GRPO surrogates), ``collapse`` (detectors),
``exact`` (the exact testbed), ``fits`` (scaling-law fits), ``tasks``, ``policy``, ``actors``,
``learner``, ``train`` and ``bench`` (the language-model system), ``config`` and ``cli``.
"""

__version__ = "0.1.0"
