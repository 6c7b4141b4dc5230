# A few images of each dataset x model x recipe trained, with the priors each object matches and its M and W(M)
# (the paper's Fig. 2 on real data): `scbloss show-matching` on the dataset's test split.


rule show_matching:
    input:
        lambda w: dataset_marker(SHOW_MATCHING[w.example]["dataset"]),
    output:
        csv=f"{RESULTS}/figures/show_matching/{{example}}.csv",
        png=report(
            f"{RESULTS}/figures/show_matching/{{example}}.png",
            caption="../report/show_matching.rst",
            category="Matching",
            labels={"figure": "{example}"},
        ),
    log:
        f"{RESULTS}/logs/show_matching/{{example}}.log",
    wildcard_constraints:
        example="|".join(re.escape(name) for name in SHOW_MATCHING) or "no-examples",
    conda:
        ENV
    params:
        args=lambda w: show_matching_args(w.example),
        prefix=lambda w, output: output.png.removesuffix(".png"),
    shell:
        "python -m scbloss show-matching {params.args} --out {params.prefix} > {log} 2>&1"
