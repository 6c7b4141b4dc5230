"""Check one of your own datasets before anything trains on it: each split read whole (every problem, each naming
its file) and every image decoded; the marker is written only when nothing is wrong."""

import logging
import os

from scbloss.atomic import write_text
from scbloss.data import load_dataset
from scbloss.data.check import check_images

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive
os.makedirs(os.path.dirname(snakemake.log[0]), exist_ok=True)
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(message)s")
problems, report, sizes = [], [], {}
for entry in snakemake.params.splits:
    try:
        data = load_dataset(
            entry["kind"], entry["root"], entry["split"], problems, entry.get("classes"), entry.get("annotations")
        )
    except (ValueError, OSError) as error:
        problems.append(f"{entry['split']}: {error}")
        continue
    report.append(
        f"{entry['split']}: {len(data.records)} images, {data.num_classes} classes: {', '.join(data.class_names)}"
    )
    sizes.update({record.file: (record.width, record.height) for record in data.records})
problems += check_images(sizes, workers=snakemake.threads, progress=False)
with open(snakemake.log[0], "a") as log:
    log.write("\n".join(report + [f"PROBLEM: {p}" for p in problems]) + "\n")
if problems:
    raise SystemExit(
        f"{snakemake.wildcards.family}: {len(problems)} problem(s) in the dataset, the first: "
        f"{problems[0]} (all in {snakemake.log[0]})"
    )
write_text(snakemake.output[0], "\n".join(report) + "\n")
