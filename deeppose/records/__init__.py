"""What a result is and where it lives: written and read only through here.

results.py   the typed record of every result file, checked on every read and write
paths.py     every artifact path, built in one place
atomic.py    writes through a temporary file and a rename, so nothing is ever half-written
output_set.py  a set of outputs (the report's) staged and swapped in together, one writer per folder
"""
