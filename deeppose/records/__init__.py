"""What a result is and where it lives: written and read only through here.

results.py   the base of every typed record (checked on every read and write), provenance, costs
training.py, timing.py, breakdown.py, summary.py   each stage family's records, which only its
             stages and the readers import, so changing one stales no other stage
paths.py     every artifact path, built in one place
atomic.py    writes through a temporary file and a rename, so nothing is ever half-written
output_set.py  a set of outputs (the report's) staged and swapped in together, one writer per folder
"""
