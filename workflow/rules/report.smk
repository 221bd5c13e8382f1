# The report reads every result of the grid (report_inputs: training, timing, per-layer breakdown,
# matmul peak, data summary) and its own code; it writes report.md, summary.json, the DVC metrics
# and plot files (headlines.json, learning_curves.csv), the tidy table of every timed run (cells.csv)
# and its figures.
rule report:
    input:
        unpack(stage_inputs("report")),
    output:
        **stage_outputs("report"),
    params:
        file=PARAMS_FILE,
        values=stage_params("report"),
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv",
    shell:
        stage_shell("report")
