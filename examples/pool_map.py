#!/usr/bin/env python3
"""GC content of every sequence of a FASTA file, with jobtree.Pool.map.

No Target class is needed for a function over a list of inputs: ``Pool``
has the calls of ``multiprocessing.Pool`` (``map``, ``imap``, ``starmap``,
``apply_async``, ...), and runs each chunk of inputs as a target of a job
tree, on this machine or on a cluster (``--batchSystem slurm``). So a chunk
that fails is tried again, and when the script is run again after a crash
or a fix, the inputs that finished are not computed again: their results
are read from the tree in the pool's folder (``--jobTree``).

Try it::

    python examples/pool_map.py --generate 2000 --fasta /tmp/reads.fa \\
        --output /tmp/gc.tsv --jobTree /tmp/jt-pool

The output has one ``name<TAB>length<TAB>GC fraction`` line per sequence,
in the order of the file.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

from jobtree import Pool, PoolError, Stack


def gc_content(record: tuple[str, str]) -> tuple[str, int, float]:
    """(name, length, fraction of G and C) of one sequence."""
    name, sequence = record
    sequence = sequence.upper()
    called = sum(sequence.count(base) for base in "ACGT")
    gc = sequence.count("G") + sequence.count("C")
    return name, len(sequence), round(gc / called, 4) if called else 0.0


def read_fasta(path: str) -> list[tuple[str, str]]:
    """The (name, sequence) records of a FASTA file."""
    records: list[tuple[str, str]] = []
    name, parts = None, []
    with open(path, encoding="ascii") as handle:
        for line in handle:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(parts)))
                name, parts = line[1:].split()[0] if line[1:].strip() else "", []
            elif line:
                parts.append(line)
    if name is not None:
        records.append((name, "".join(parts)))
    return records


def generate(path: str, count: int, seed: int = 7) -> None:
    """Writes ``count`` random sequences of 50 to 500 bases, 60 bases a line."""
    rng = random.Random(seed)
    with open(path, "w", encoding="ascii") as handle:
        for number in range(count):
            bias = rng.uniform(0.3, 0.7)
            bases = [rng.choice("GC") if rng.random() < bias else rng.choice("AT")
                     for _ in range(rng.randint(50, 500))]
            handle.write(f">read{number}\n")
            for start in range(0, len(bases), 60):
                handle.write("".join(bases[start:start + 60]) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fasta", required=True, help="the FASTA file to read")
    parser.add_argument("--output", required=True, help="the table to write")
    parser.add_argument("--generate", type=int, metavar="N",
                        help="first write N random sequences to --fasta")
    parser.add_argument("--chunksize", type=int, default=None,
                        help="sequences per target (default: about 4 targets per core)")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args()
    if options.generate:
        generate(options.fasta, options.generate)
    if not os.path.isfile(options.fasta):
        parser.error(f"--fasta {options.fasta} does not exist (use --generate N to make one)")
    records = read_fasta(options.fasta)
    with Pool(options=options) as pool:
        try:
            rows = pool.map(gc_content, records, chunksize=options.chunksize, memory="200M")
        except PoolError as err:
            print(f"pool_map.py: {err}", file=sys.stderr)
            return 1
    with open(options.output + ".tmp", "w", encoding="ascii") as handle:
        handle.writelines(f"{name}\t{length}\t{gc}\n" for name, length, gc in rows)
    os.replace(options.output + ".tmp", options.output)
    print(f"wrote the GC content of {len(rows)} sequences to {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
