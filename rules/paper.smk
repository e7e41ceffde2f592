# Paper: latexmk turns paper/main.tex into paper/main.pdf, with every number from the generated
# macros and every figure from figures/.


rule paper:
    input:
        tex="paper/main.tex",
        bib="paper/refs.bib",
        macros=PATHS["macros"],
        figures=[FIGURE[name]["pdf"] for name in FIGURES],
    output:
        PATHS["paper"],
    log:
        PATHS["paper_log"],
    conda:
        "../envs/paper.yaml"
    shell:
        "latexmk -pdf -cd -interaction=nonstopmode -halt-on-error {input.tex} > {log} 2>&1"
