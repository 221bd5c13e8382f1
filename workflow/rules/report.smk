# The report reads every result of the grid (report_inputs: training, timing, per-layer breakdown,
# matmul peak, data summary) and its own code; it writes report.md, summary.json and the figures of
# every section (deeppose.report.figure_paths lists them) into reports/figures.
from pathlib import Path

REPORT_CODE = sorted(str(path) for path in Path("deeppose/report").glob("*.py"))


rule report:
    input:
        **report_inputs(),
        code=REPORT_CODE,
    output:
        markdown=str(paths.report_markdown()),
        summary=str(paths.report_summary()),
        figures=directory(str(paths.report_figures())),
    params:
        file=PARAMS_FILE,
        # the keys that choose which results it reads; every other key reaches it through them
        values=section("grid", "breakdown.batch_exponents"),
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/report.log",
    shell:
        "python -m deeppose report --params {params.file} > {log} 2>&1"
