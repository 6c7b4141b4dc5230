# scbloss: regenerate Tables 1-9 of "Scale-balanced loss for object detection" (Pattern Recognition 117, 2021).
#   snakemake --cores all                                                   # toy dataset, laptop CPU
#   snakemake --profile slurm --configfile config/paper.yaml                # the paper, on a SLURM GPU cluster
from snakemake.utils import min_version, validate

min_version("8.0")


# The toy config is the default, not a base layer: Snakemake would deep-merge a --configfile into it, and toy-only
# keys (per-model batch sizes, ...) would leak into the paper's runs. A --configfile given is the whole config.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


container: config["container"]


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/show_matching.smk"


# Bookkeeping rules run where Snakemake runs, not as cluster jobs.
localrules:
    all,
    run_config,
    curves,
    table,
    summary,
    plan,
    show_matching,


rule all:
    default_target: True
    input:
        all_outputs(),
