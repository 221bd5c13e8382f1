"""What a result is and where it lives: written and read only through here.

results.py   the base of every typed record (checked on every read and write), provenance, costs
data.py, training.py, timing.py, peak.py, breakdown.py, summary.py
             each stage's records, imported only by the stages that write or read them, so
             changing one stales no other stage
paths.py     every artifact path, built in one place
atomic.py    writes through a temporary file and a rename, so nothing is ever half-written
output_set.py  a set of outputs (the report's) staged and swapped in together, one writer per folder
"""
