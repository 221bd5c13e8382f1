# deeppose pipeline for Snakemake: `snakemake --cores all` (it loads the workflow profile profiles/default/).
# Rules are thin calls of `python -m deeppose <stage>`; the grid and every path come from the
# deeppose package (workflow/rules/common.smk). dvc.yaml defines the same jobs for `dvc repro`.
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"


wildcard_constraints:
    framework="|".join(GRID.frameworks),
    loss="|".join(GRID.loss_modes),
    device="|".join(GRID.devices),
    batch_exp=r"\d+",


rule all:
    default_target: True
    input:
        str(paths.report_markdown()),


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/timing.smk"
include: "workflow/rules/report.smk"
