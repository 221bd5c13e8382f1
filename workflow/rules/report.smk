rule report:
    input:
        **report_inputs(),
    output:
        markdown=str(paths.report_markdown()),
        summary=str(paths.report_summary()),
        figures=directory(str(paths.report_figures())),
    params:
        file=PARAMS_FILE,
        values=section("grid"),
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/report.log",
    shell:
        "python -m deeppose report --params {params.file} > {log} 2>&1"
