rule time:
    input:
        str(paths.PREPARED),
    output:
        str(paths.timing_result(CELL)),
    params:
        file=PARAMS_FILE,
        values=section("seed", "model", "timing", "train.optimizer", "train.lr", "train.momentum"),
    threads: ALL_CORES
    resources:
        gpu=gpus,
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/time/{framework}/{loss}/{device}/b{batch_exp}.log",
    shell:
        "python -m deeppose time --params {params.file} --framework {wildcards.framework}"
        " --loss {wildcards.loss} --device {wildcards.device} --batch-exp {wildcards.batch_exp}"
        " > {log} 2>&1"


rule peak:
    output:
        str(paths.matmul_peak()),
    params:
        file=PARAMS_FILE,
        values=section("timing.threads"),
    threads: ALL_CORES
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/peak.log",
    shell:
        "python -m deeppose peak --params {params.file} > {log} 2>&1"


rule breakdown:
    input:
        str(paths.PREPARED),
        str(paths.matmul_peak()),
    output:
        str(paths.breakdown_result(CELL)),
    params:
        file=PARAMS_FILE,
        values=section("seed", "model", "breakdown", "timing.threads", "timing.warmup"),
    threads: ALL_CORES
    resources:
        gpu=gpus,
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/breakdown/{framework}/{loss}/{device}/b{batch_exp}.log",
    shell:
        "python -m deeppose breakdown --params {params.file} --framework {wildcards.framework}"
        " --loss {wildcards.loss} --device {wildcards.device} --batch-exp {wildcards.batch_exp}"
        " > {log} 2>&1"
