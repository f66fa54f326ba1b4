#!/usr/bin/env python3
"""Sorts the lines of a text file with a parallel merge sort: the jobTree showcase.

The tree of targets looks like this::

    Setup ............................ follow-on: Cleanup (put the result in place)
     └─ child: Down(whole file)
         ├─ child: Down(first half)  ─┐ run in parallel; each splits again
         ├─ child: Down(second half) ─┘ while its range is bigger than N
         └─ follow-on: Up (merge the two sorted halves)

Each ``Down`` target splits its byte range of the input file in two at a line
boundary, hands each half to a child ``Down`` target and sets an ``Up``
follow-on, which runs only once both children (and everything below them) are
done and merges their two sorted temporary files. The recursion stops when a
range is at most ``--N`` bytes: that range is sorted in memory. Finally
``Cleanup`` puts the sorted file in place of the input (the classic sort sorts
in place) or writes it to ``--output``.

Try it::

    python examples/sort.py --generate 1M --fileToSort /tmp/x.txt --jobTree /tmp/jt

Things every target here is careful about (and yours should be too):

* Targets are pickled and run in other processes, so they keep only plain data
  (paths and numbers) in their attributes.
* A target may run more than once (after a crash, or a retry), so each one only
  writes its own output files, overwriting them whole, and never deletes or
  changes its inputs.
* This script is re-imported on the workers to find the target classes, so all
  the work of the command line happens inside ``main()``.

Lines are compared as bytes, which for UTF-8 text is the same order as
Python's ``sorted()`` of the decoded lines. Every line is expected to end with
a newline; a last line without one gets one in the output.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import re
import shutil
import sys

from jobtree import Stack, Target

# Resources: each target may say what it needs (memory, cpu, time, disk), so
# the batch system can fit as many targets on a machine as are safe. Merging
# streams through the files and needs little; sorting a range in memory needs
# a few times its size (Python keeps every line as an object of its own).
SMALL_MEMORY = 256 * 1024 ** 2


def sortMemory(size: int) -> int:
    """The memory to ask for to sort `size` bytes in memory."""
    return SMALL_MEMORY + 5 * size


class Setup(Target):
    """The root target: starts the sort of the whole file and sets the clean up."""

    def __init__(self, inputFile: str, outputFile: str, N: int):
        super().__init__(memory=SMALL_MEMORY)
        self.inputFile = inputFile
        self.outputFile = outputFile
        self.N = N

    def run(self) -> None:
        size = os.path.getsize(self.inputFile)
        # The global temp dir of Setup lasts until its follow-on (Cleanup) has
        # finished, and its children can see it: the right place for the
        # sorted copy that Down makes and Cleanup copies into place. A fixed
        # name keeps a re-run of this target from leaving strays behind.
        sortedFile = os.path.join(self.getGlobalTempDir(), "sorted.txt")
        self.logToMaster(f"Sorting {self.inputFile} ({size} bytes) in chunks "
                         f"of at most {self.N} bytes")
        self.addChildTarget(Down(self.inputFile, 0, size, self.N, sortedFile))
        self.setFollowOnTarget(Cleanup(sortedFile, self.outputFile))


class Down(Target):
    """Sorts the lines in bytes [fileStart, fileEnd) of inputFile into outputFile.

    The range always starts at the start of a line and ends at the end of one.
    """

    def __init__(self, inputFile: str, fileStart: int, fileEnd: int, N: int,
                 outputFile: str):
        # This target sorts at most min(N, its range) bytes in memory.
        super().__init__(memory=sortMemory(min(N, fileEnd - fileStart)))
        self.inputFile = inputFile
        self.fileStart = fileStart
        self.fileEnd = fileEnd
        self.N = N
        self.outputFile = outputFile

    def run(self) -> None:
        length = self.fileEnd - self.fileStart
        if length > self.N:
            midPoint = findSplitPoint(self.inputFile, self.fileStart, self.fileEnd)
            if midPoint is not None:
                # Two halves, each sorted by a child into a file of this
                # target's global temp dir, which the children can write to
                # and which lasts until the Up follow-on has merged them.
                tempDir = self.getGlobalTempDir()
                firstHalf = os.path.join(tempDir, "first.txt")
                secondHalf = os.path.join(tempDir, "second.txt")
                self.addChildTarget(Down(self.inputFile, self.fileStart, midPoint,
                                         self.N, firstHalf))
                self.addChildTarget(Down(self.inputFile, midPoint, self.fileEnd,
                                         self.N, secondHalf))
                self.setFollowOnTarget(Up(firstHalf, secondHalf, self.outputFile))
                return
            # A single line longer than N: there is nothing to split.
        sortRange(self.inputFile, self.fileStart, self.fileEnd, self.outputFile)


class Up(Target):
    """Merges two sorted files into outputFile (the merge step of merge sort)."""

    def __init__(self, inputFile1: str, inputFile2: str, outputFile: str):
        super().__init__(memory=SMALL_MEMORY)
        self.inputFile1 = inputFile1
        self.inputFile2 = inputFile2
        self.outputFile = outputFile

    def run(self) -> None:
        merge(self.inputFile1, self.inputFile2, self.outputFile)


class Cleanup(Target):
    """Puts the sorted file where it belongs: over the input, or at --output."""

    def __init__(self, sortedFile: str, outputFile: str):
        super().__init__(memory=SMALL_MEMORY)
        self.sortedFile = sortedFile
        self.outputFile = outputFile

    def run(self) -> None:
        # Copy rather than move, so that a second run of this target still
        # finds the sorted file; the copy replaces the output in one step, so
        # the output is never seen half written.
        replaceWithCopy(self.sortedFile, self.outputFile)
        self.logToMaster(f"Wrote the sorted lines to {self.outputFile}")


# --- The work itself: plain functions that the targets call. ---------------


def findSplitPoint(inputFile: str, fileStart: int, fileEnd: int) -> int | None:
    """Returns a line boundary strictly inside (fileStart, fileEnd), or None.

    Prefers the first boundary after the middle of the range, so the halves are
    about even; falls back to the end of the first line when the line that
    holds the middle runs to the end of the range. None means the range is a
    single line.
    """
    with open(inputFile, "rb") as fileHandle:
        middle = fileStart + (fileEnd - fileStart) // 2
        fileHandle.seek(middle)
        # The range ends with a newline, so this reads to a newline at or
        # before fileEnd: the split point is just after it.
        splitPoint = middle + len(fileHandle.readline())
        if fileStart < splitPoint < fileEnd:
            return splitPoint
        fileHandle.seek(fileStart)
        splitPoint = fileStart + len(fileHandle.readline())
        if fileStart < splitPoint < fileEnd:
            return splitPoint
    return None


def sortRange(inputFile: str, fileStart: int, fileEnd: int, outputFile: str) -> None:
    """Sorts the lines of bytes [fileStart, fileEnd) of inputFile in memory."""
    with open(inputFile, "rb") as fileHandle:
        fileHandle.seek(fileStart)
        data = fileHandle.read(fileEnd - fileStart)
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"  # only the last line of a file can lack one
    lines.sort()
    with open(outputFile, "wb") as fileHandle:
        fileHandle.writelines(lines)


def merge(inputFile1: str, inputFile2: str, outputFile: str) -> None:
    """Merges two sorted files into one, a line at a time (any size fits)."""
    with open(inputFile1, "rb") as file1, open(inputFile2, "rb") as file2, \
            open(outputFile, "wb") as output:
        output.writelines(heapq.merge(file1, file2))


def replaceWithCopy(source: str, destination: str) -> None:
    """Replaces destination by a copy of source in one atomic rename."""
    partial = f"{destination}.partial-{os.getpid()}"
    shutil.copyfile(source, partial)
    os.replace(partial, destination)


# --- Making test data. -------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789     .,;:-_!?"


def parseSize(text: str) -> int:
    """Parses a size such as 100K, 10M, 1G or 12345 (binary units) into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kKmMgG]?)[bB]?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give bytes or a number with K, M or G, e.g. 10M")
    scale = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def generateFile(path: str, size: int, seed: int) -> None:
    """Writes about `size` bytes of random lines (each ending in a newline).

    Some lines repeat and some are empty, so the sort meets ties and empty
    lines too.
    """
    rng = random.Random(seed)
    written = 0
    recent: list[bytes] = []
    with open(path, "wb") as fileHandle:
        while written < size:
            roll = rng.random()
            if roll < 0.02:
                line = b"\n"
            elif roll < 0.07 and recent:
                line = rng.choice(recent)
            else:
                length = rng.randint(1, 100)
                line = "".join(rng.choices(_ALPHABET, k=length)).encode() + b"\n"
                recent = (recent + [line])[-50:]
            fileHandle.write(line)
            written += len(line)


# --- The command line. -------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Sorts the lines of a file with a parallel merge sort run by jobTree.")
    parser.add_argument("--fileToSort", required=True, metavar="FILE",
                        help="The file to sort. It is sorted in place unless --output is given.")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="Write the sorted lines here and leave --fileToSort as it is.")
    parser.add_argument("--N", type=parseSize, default=1_000_000,
                        help="Ranges of at most this many bytes are sorted in memory "
                             "by one target (default 1000000; K, M and G are allowed).")
    parser.add_argument("--generate", type=parseSize, default=None, metavar="SIZE",
                        help="First write about SIZE bytes of random lines (e.g. 100K, 10M) "
                             "to --fileToSort, overwriting it.")
    parser.add_argument("--seed", type=int, default=0,
                        help="Random seed for --generate (default 0).")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args(argv)

    if options.N < 1:
        parser.error("--N must be at least 1 byte")
    # Targets run in other processes, maybe in other directories: use
    # absolute paths.
    fileToSort = os.path.abspath(options.fileToSort)
    outputFile = os.path.abspath(options.output) if options.output else fileToSort

    # jobTree continues a tree whose directory exists instead of starting anew.
    jobTreeDir = os.path.expanduser(getattr(options, "jobTree", None) or "./jobTree")
    resuming = os.path.exists(jobTreeDir)
    if options.generate is not None:
        if resuming:
            # The tree already holds the job for the file made last time:
            # making a new file now would change the input under it.
            print(f"{jobTreeDir} exists, so this run resumes it: not generating "
                  f"a new {fileToSort}", file=sys.stderr)
        else:
            try:
                os.makedirs(os.path.dirname(fileToSort), exist_ok=True)
                generateFile(fileToSort, options.generate, options.seed)
            except OSError as err:
                parser.error(f"cannot write --fileToSort {options.fileToSort}: {err.strerror}")
    if not os.path.isfile(fileToSort):
        parser.error(f"--fileToSort {options.fileToSort} is not a file "
                     f"(use --generate SIZE to make one)")

    failed = Stack(Setup(fileToSort, outputFile, options.N)).startJobTree(options)
    if failed:
        print(f"sort.py: {failed} target(s) failed; fix the cause and run the same "
              f"command again to resume the tree in {jobTreeDir}", file=sys.stderr)
        return 1
    print(f"Sorted {fileToSort} into {outputFile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
