rule train:
    input:
        str(paths.PREPARED),
    output:
        log=str(paths.train_log(CELL)),
        curve=str(paths.train_curve(CELL)),
        metrics=str(paths.train_metrics(CELL)),
    params:
        file=PARAMS_FILE,
        values=section("seed", "model", "train"),
    threads: ALL_CORES
    resources:
        gpu=gpus,
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/train/{framework}/{loss}/{device}.log",
    shell:
        "python -m deeppose train --params {params.file} --framework {wildcards.framework}"
        " --loss {wildcards.loss} --device {wildcards.device} > {log} 2>&1"
