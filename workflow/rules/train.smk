rule train:
    input:
        unpack(stage_inputs("train")),
    output:
        **stage_outputs("train"),
    params:
        file=PARAMS_FILE,
        values=stage_params("train"),
    threads: ALL_CORES
    resources:
        gpu=gpus,
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/train/{framework}/{loss}/{device}.log",
    shell:
        stage_shell("train")
