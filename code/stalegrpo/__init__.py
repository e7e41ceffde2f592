"""stalegrpo: staleness-learning-rate scaling laws for asynchronous GRPO (arXiv:2607.01083).

One module per concept; read them in this order:

- the method: ``objectives`` (the GRPO surrogates, behavior policy explicit), ``collapse`` (the
  collapse detectors), ``exact`` (the exact testbed), ``fits`` (the scaling-law fits, verdicts
  and the paper's numbers);
- the learner's step: ``policy`` (models, tokenizers, log-probs from hidden states), ``learner``
  (the DeepSpeed step and the bias probe), ``memory`` (peak-memory readings);
- the training loop: ``train`` (the loop), ``train_config`` (its keys and their checks),
  ``records`` (the step-row schema and the tables), ``evaluation`` (held-out evals and the bias probe), ``runstate`` (checkpoints and
  resume), ``ranks`` (learner ranks and test hooks), ``schedules`` (the fixed schedule and admission control), ``engines`` (the
  async actor engines), ``placement`` (where processes go), ``weights`` (weight transports and the WeightReceiver protocol),
  ``checkpoints`` (checkpoint checks), ``logger`` (TensorBoard);
- generation: ``rollout`` (the Actor protocol and batches), ``actors`` (a package: the backends
  side by side, ``hf`` and ``vllm`` with its worker extension, their registry and factory),
  ``tasks`` (a package: tasks, verifiers and their registry);
- tools: ``pretrain``, ``bench``, ``config`` and ``cli``.
"""

__version__ = "0.1.0"
