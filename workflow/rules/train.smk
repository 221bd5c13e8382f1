# The checkpoint (checkpoints/<framework>/<loss>/<device>/last.npz, holding the log of its epochs) is
# deliberately no output: Snakemake deletes outputs before a job runs, so a killed job could not
# resume. deeppose/resume.py resumes only an unfinished checkpoint of the same parameters, so a
# forced rerun (--forceall) trains afresh.
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
