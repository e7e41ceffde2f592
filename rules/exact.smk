# Simulation: the exact testbed (docs/method.md §9). One CPU job per experiment; the testbed
# vectorises the whole (S, eta, seed, eps) grid of an experiment inside that job.


rule exact:
    input:
        config=exact_config,
        code=CODE["exact"],
    output:
        steps=PATHS["exact_steps"],
        runs=PATHS["exact_runs"],
        summary=PATHS["exact_summary"],
    params:
        out=output_dir,
        overrides=exact_overrides,
        stalegrpo=STALEGRPO,
    log:
        PATHS["exact_log"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime="20m",
    conda:
        "../envs/train.yaml"
    shell:
        "{params.stalegrpo} exact {input.config} {params.overrides} threads={threads} --out {params.out} > {log} 2>&1"
