rule synthesize:
    output:
        directory(str(paths.SYNTHETIC)),
    params:
        file=PARAMS_FILE,
        values=section("seed", "data.synthetic"),
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/synthesize.log",
    shell:
        "python -m deeppose synthesize --params {params.file} > {log} 2>&1"


rule prepare:
    input:
        str(paths.SYNTHETIC),
    output:
        directory(str(paths.PREPARED)),
        summary=str(paths.prepared_summary()),
        preview=str(paths.preview_image()),
    params:
        file=PARAMS_FILE,
        values=section("seed", "data"),
    conda:
        "../envs/deeppose.yaml"
    log:
        "logs/prepare.log",
    shell:
        "python -m deeppose prepare --params {params.file} > {log} 2>&1"
