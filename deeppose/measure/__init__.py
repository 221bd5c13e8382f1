"""The measuring harness the stages share: how a process is set up to measure and what it records.

harness.py       time a callable: warm-ups dropped, the device synchronised, every sample kept
blocks.py        the block design: seeded interleaved schedules, interference from /proc/stat
block_server.py  forks fresh block processes from a parent that has imported a framework once
allocator.py     glibc's allocator pinned before anything allocates
threads.py       every native thread pool set to the parameters' count
lock.py          the machine-wide lock that keeps measurements apart
memory_probe.py  the peak memory of one call above the process's baseline
environment.py   machine, OS, packages and commit, recorded with every result
machine.py       the machine's fingerprint, which provenance compares
fairness.py      the manifest of what each framework's process ran with (kernels, threads, dtype)
cost.py          what each job cost (wall time, lock waits, memory)
"""
