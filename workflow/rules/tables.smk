# The paper's tables, rendered beside the reproduced numbers, the overall summary, and the `plan` target.


rule table:
    input:
        spec=lambda w: table_spec_file(w.table),
        templates=lambda w: [
            f"{config['tables_dir']}/templates/{'comparison' if w.table in COMPARISONS else 'table'}.{s}.j2"
            for s in ("md", "tex")
        ],
        metrics=lambda w: table_metrics(next(s for s in SPECS if s["id"] == w.table)),
    output:
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
        csv=report(
            f"{RESULTS}/tables/{{table}}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        f"{RESULTS}/logs/tables/{{table}}.log",
    conda:
        ENV
    params:
        runs_dir=RUNS_DIR,
        seeds=lambda w: experiments.table_seeds(next(s for s in SPECS if s["id"] == w.table), SEEDS),
        templates=lambda w, input: os.path.dirname(input.templates[0]),
        toy="--toy" if TOY and not IMPORTED else "",
    shell:
        "python -m scbloss tables render --spec {input.spec} --runs-dir {params.runs_dir} --seeds {params.seeds} "
        "--templates {params.templates} --out-dir $(dirname {output.md}) {params.toy} > {log} 2>&1"


rule comparison_spec:
    # The comparison table of one of your datasets and a detector, as a table file for the `table` rule.
    output:
        f"{RESULTS}/tables/specs/{{table}}.yaml",
    log:
        f"{RESULTS}/logs/tables/{{table}}-spec.log",
    conda:
        ENV
    params:
        spec=lambda w: next(s for s in SPECS if s["id"] == w.table),
    script:
        "../scripts/write_yaml.py"


rule summary:
    # The comparisons of your datasets first (the toy run's headline), then how the paper's tables compare.
    input:
        tables=[f"{RESULTS}/tables/{spec['id']}.csv" for spec in PAPER_TABLES],
        comparisons=[f"{RESULTS}/tables/{table}.md" for table in sorted(COMPARISONS)],
    output:
        report(f"{RESULTS}/tables/summary.md", caption="../report/summary.rst", category="Tables"),
    log:
        f"{RESULTS}/logs/tables/summary.log",
    conda:
        ENV
    params:
        toy="--toy" if TOY and not IMPORTED else "",
        comparisons=lambda w, input: " ".join(f"--comparison {path}" for path in input.comparisons),
    shell:
        "python -m scbloss tables summary {input.tables} {params.comparisons} --out {output} {params.toy} > {log} 2>&1"


rule plan:
    # `snakemake plan`: jobs and estimated GPU-hours per table for this config, before anything runs.
    log:
        f"{RESULTS}/logs/plan.log",
    conda:
        ENV
    script:
        "../scripts/plan.py"
