"""Write one run's resolved training config (params.values) to its YAML output, atomically."""

import yaml

from scbloss.atomic import write_text

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
write_text(snakemake.output[0], yaml.safe_dump(snakemake.params.values, sort_keys=False))
