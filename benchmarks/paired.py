#!/usr/bin/env python3
"""Interleaved launches: each round runs every command once, in turn, so drift in the
machine's state (other load, caches, frequency) hits all of them alike — hyperfine runs
all of one command, then all of the next. Wall time per launch through posix_spawn
(Python adds the same ~0.4 ms to each). Prints medians and ratios to the first command.

    benchmarks/paired.py ROUNDS 'NAME=COMMAND ARGS…' 'NAME=COMMAND ARGS…' …
"""
import shlex
import statistics
import subprocess
import sys
import time

rounds = int(sys.argv[1])
commands = [(spec.split("=", 1)[0], shlex.split(spec.split("=", 1)[1])) for spec in sys.argv[2:]]
times = {name: [] for name, _ in commands}
for _ in range(rounds):
    for name, argv in commands:
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - start)
first = statistics.median(times[commands[0][0]])
for name, _ in commands:
    m = statistics.median(times[name])
    print(f"paired: {name}: median {m * 1000:.3f} ms, {m / first:.2f}x {commands[0][0]} ({rounds} rounds)")
