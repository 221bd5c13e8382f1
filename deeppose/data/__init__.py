"""The data stage: the embedded synthetic dataset, the LSP/LSPET readers, preparation, batches.

    python -m deeppose synthesize --params params.yaml   # data/synthetic/ in LSP's on-disk format
    python -m deeppose prepare --params params.yaml      # data/prepared/ + results/data/prepare.json

Modules, in pipeline order:
  lsp.py        read LSP (3x14xN, flag 0 = visible) and LSP-extended (14x3xN, flag 1 = visible)
                from a folder or the original zip into one convention: joints (N, 14, 2) as (x, y)
                pixel coordinates, visible and annotated (N, 14) bool
  synthetic.py  seeded articulated figures on cluttered backgrounds, written as an LSP dataset
  prepare.py    the study's padding and 256x256 crop, the drop rules, the train/test arrays
  dataset.py    `load_prepared`: the prepared arrays of one split (images memory-mapped)
  batches.py    framework-neutral seeded batch order and 227x227 crops: every framework sees the
                same batches in the same order
  preview.py    a figure of prepared samples with their labels, to check them by eye
"""
