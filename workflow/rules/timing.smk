rule time:
    input:
        unpack(stage_inputs("time")),
    output:
        **stage_outputs("time"),
    params:
        file=PARAMS_FILE,
        values=stage_params("time"),
    threads: ALL_CORES
    resources:
        gpu=gpus,
    log:
        "logs/time/{device}/b{batch_exp}.log",
    benchmark:
        "logs/benchmarks/time/{device}/b{batch_exp}.tsv",
    shell:
        stage_shell("time")


rule peak:
    input:
        unpack(stage_inputs("peak")),
    output:
        **stage_outputs("peak"),
    params:
        file=PARAMS_FILE,
        values=stage_params("peak"),
    threads: ALL_CORES
    log:
        "logs/peak.log",
    benchmark:
        "logs/benchmarks/peak.tsv",
    shell:
        stage_shell("peak")


rule breakdown:
    input:
        unpack(stage_inputs("breakdown")),
    output:
        **stage_outputs("breakdown"),
    params:
        file=PARAMS_FILE,
        values=stage_params("breakdown"),
    threads: ALL_CORES
    resources:
        gpu=gpus,
    log:
        "logs/breakdown/{device}/b{batch_exp}.log",
    benchmark:
        "logs/benchmarks/breakdown/{device}/b{batch_exp}.tsv",
    shell:
        stage_shell("breakdown")
