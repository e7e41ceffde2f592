# Simulation: language-model runs (docs/method.md §2-§7), switched on by lm.enabled.
# Where each job runs: on CPU, one process (fixed schedule) or the learner plus its actor engine
# processes (async), sharing the job's threads; with learners = L > 1, `stalegrpo train` starts
# its L ranks itself through torchrun. On CUDA (lm.resources.device: cuda), learner rank r on the
# job's GPU r and each actor engine on the next actor_devices GPUs, so a job asks for
# learners + actors x actor_devices GPUs (async) or learners (fixed): train_gpus in common.smk.
# 1. pretrain the base policy once per base (task + model), unless lm.checkpoint names one;
# 2. train one job per point of the Paramspace over S x eta x seed x objective x LR schedule;
# 3. benchmark sync vs async throughput.


rule pretrain:
    input:
        config=LM["pretrain"]["config"],
        code=CODE["pretrain"],
    output:
        PATHS["pretrain_json"],
    params:
        out=output_dir,
        overrides=override_args(LM["pretrain"]["overrides"]),
        stalegrpo=STALEGRPO,
    log:
        PATHS["pretrain_log"],
    threads: LM["resources"]["threads"]
    resources:
        mem_mb=LM["resources"]["mem_mb"],
        runtime=LM["resources"]["runtime"],
        gpu=pretrain_gpus,
    conda:
        "../envs/train.yaml"
    shell:
        "{params.stalegrpo} pretrain {input.config} {params.overrides} threads={threads} --out {params.out} > {log} 2>&1"


rule train:
    input:
        config=LM["train_config"],
        base=pretrain_inputs,
        code=CODE["train"],
    output:
        steps=PATHS["run_steps"],
        summary=PATHS["run_summary"],
    params:
        out=output_dir,
        overrides=train_overrides,
        stalegrpo=STALEGRPO,
    log:
        PATHS["run_log"],
    threads: train_threads
    resources:
        mem_mb=LM["resources"]["mem_mb"],
        runtime=LM["resources"]["runtime"],
        gpu=train_gpus,
    conda:
        "../envs/train.yaml"
    shell:
        "{params.stalegrpo} train {input.config} {params.overrides} threads={threads} --out {params.out} > {log} 2>&1"


rule bench:
    input:
        config=LM["bench"]["config"],
        base=pretrain_inputs,
        code=CODE["bench"],
    output:
        PATHS["bench_json"],
    params:
        out=output_dir,
        overrides=bench_overrides,
        stalegrpo=STALEGRPO,
    log:
        PATHS["bench_log"],
    threads: LM["bench"]["threads"]
    resources:
        mem_mb=LM["resources"]["mem_mb"],
        runtime=LM["resources"]["runtime"],
        gpu=bench_gpus,
    conda:
        "../envs/train.yaml"
    shell:
        "{params.stalegrpo} bench lm {input.config} {params.overrides} threads={threads} --out {params.out} > {log} 2>&1"
