# The checkpoint (checkpoints/<framework>/<loss>/<device>/last.npz, holding the log of its epochs) is
# deliberately no output: Snakemake deletes outputs before a job runs, so a killed job could not
# resume. deeppose/resume.py resumes only an unfinished checkpoint of the same parameters, so a
# forced rerun (--forceall) trains afresh.
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
    log:
        "logs/train/{framework}/{loss}/{device}.log",
    benchmark:
        "logs/benchmarks/train/{framework}/{loss}/{device}.tsv",
    shell:
        stage_shell("train")
