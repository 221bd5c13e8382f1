rule synthesize:
    input:
        unpack(stage_inputs("synthesize")),
    output:
        **stage_outputs("synthesize"),
    params:
        file=PARAMS_FILE,
        values=stage_params("synthesize"),
    log:
        "logs/synthesize.log",
    benchmark:
        "logs/benchmarks/synthesize.tsv",
    shell:
        stage_shell("synthesize")


rule prepare:
    input:
        unpack(stage_inputs("prepare")),
    output:
        **stage_outputs("prepare"),
    params:
        file=PARAMS_FILE,
        values=stage_params("prepare"),
    log:
        "logs/prepare.log",
    benchmark:
        "logs/benchmarks/prepare.tsv",
    shell:
        stage_shell("prepare")
