"""Write params.spec (a comparison table's spec) to the rule's YAML output, atomically."""

import yaml

from scbloss.atomic import write_text

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
write_text(snakemake.output[0], yaml.safe_dump(snakemake.params.spec, sort_keys=False))
