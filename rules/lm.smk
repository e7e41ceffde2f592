# Simulation: language-model runs (docs/method.md §2-§7), switched on by lm.enabled.
# Where each job runs: on CPU, one process (fixed schedule) or the learner plus its actor engine
# processes (async), sharing the job's threads; with learners = L > 1, `stalegrpo train` starts
# its L ranks itself through torchrun. On CUDA (lm.resources.device: cuda), learner rank r on the
# job's GPU r and each actor engine on the next actor_devices GPUs, so a job asks for
# learners + actors x actor_devices GPUs (async) or learners (fixed): train_gpus in common.smk.
# 0. with lm.standin, write a tiny random Qwen2/Llama checkpoint (one process, seconds);
# 1. pretrain the base policy once per base (task + model; from the stand-in if there is one),
#    unless lm.checkpoint names one: one process, on the job's GPU on CUDA;
# 2. train one job per point of the Paramspace over S x eta x seed x objective x LR schedule;
# 3. benchmark sync vs async throughput, alone on the machine in a local run.


rule standin:
    input:
        code=CODE["standin"],
    output:
        PATHS["standin_config"],
    params:
        out=output_dir,
        overrides=standin_overrides,
        stalegrpo=STALEGRPO,
    log:
        PATHS["standin_log"],
    conda:
        "../envs/train.yaml"
    shell:
        "{params.stalegrpo} make-checkpoint {params.overrides} --out {params.out} > {log} 2>&1"


rule pretrain:
    input:
        config=LM["pretrain"]["config"],
        standin=standin_inputs,
        code=CODE["pretrain"],
    output:
        PATHS["pretrain_json"],
    params:
        out=output_dir,
        overrides=pretrain_overrides,
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
        threads=LM["bench"]["threads"],
    log:
        PATHS["bench_log"],
    # the benchmark runs on lm.bench.threads (params.threads); Snakemake reserves bench_threads:
    # locally every core, so that no other job runs beside it and skews its timings
    threads: bench_threads
    resources:
        mem_mb=LM["resources"]["mem_mb"],
        runtime=LM["resources"]["runtime"],
        gpu=bench_gpus,
    conda:
        "../envs/train.yaml"
    shell:
        "{params.stalegrpo} bench lm {input.config} {params.overrides} threads={params.threads} --out {params.out} > {log} 2>&1"
