"""`snakemake plan -c1`: print the jobs and estimated GPU-hours of the config, per table, and keep a copy in the log."""

import os

from scbloss.experiments import plan

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
text = plan(snakemake.config)
print(text)
os.makedirs(os.path.dirname(snakemake.log[0]), exist_ok=True)
with open(snakemake.log[0], "w") as handle:
    handle.write(text + "\n")
