"""Write one run's resolved training config (params.values) to its YAML output, atomically."""

import os

import yaml

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
temporary = snakemake.output[0] + ".tmp"
with open(temporary, "w") as handle:
    yaml.safe_dump(snakemake.params.values, handle, sort_keys=False)
os.replace(temporary, snakemake.output[0])
