#!/usr/bin/env python3
"""Counts the words of many text files in parallel, with function targets.

Not every step needs a Target subclass: plain functions make targets too.
This example builds its whole tree from functions::

    countWords            root, made by Target.makeTargetFn: a "target
     │                    function", called with its target first
     ├─ countFile (each)  children, addChildTargetFn: use their target's local
     │                    temp dir and logToMaster
     ├─ measureInputs     child, addChildFn: a plain function
     └─ mergeCounts       follow-on, setFollowOnFn: runs once all the children
                          are done

The children leave their results in the global temp dir of ``countWords``,
which lasts until its follow-on ``mergeCounts`` has read them and is then
removed by jobTree.

A word is a run of letters, digits, underscores and apostrophes, after
lower-casing: ``re.findall(r"[\\w']+", line.lower())``. The output has one
``word<TAB>count`` line per word, most frequent first (ties in word order),
and a JSON summary is written next to it.

Try it::

    python examples/wordcount.py --generate 8 --inputDir /tmp/texts \\
        --output /tmp/counts.tsv --jobTree /tmp/jt-wc

Functions given to jobtree are best defined at the top level of the script:
they are then pickled by name and the script is re-imported on the workers,
so a fixed version runs after a restart (lambdas and closures work too, but
are pickled by value). Like any target, they must be safe to run twice.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import random
import re
import shutil
import sys

from jobtree import Stack, Target

WORD = re.compile(r"[\w']+")


# --- The targets. ------------------------------------------------------------


def countWords(target: Target, inputFiles: list[str], outputFile: str,
               summaryFile: str) -> None:
    """The root: one counting child per file, then a follow-on that merges."""
    countsDir = target.getGlobalTempDir()
    countFiles = []
    for index, inputFile in enumerate(inputFiles):
        countsFile = os.path.join(countsDir, f"{index:06d}.counts.json")
        countFiles.append(countsFile)
        # A target function: countFile(childTarget, inputFile, countsFile).
        # Function targets take the same resource requests as Target().
        target.addChildTargetFn(countFile, args=(inputFile, countsFile), memory="512M")
    # A plain function: it needs nothing from its target.
    sizesFile = os.path.join(countsDir, "sizes.json")
    target.addChildFn(measureInputs, args=(inputFiles, sizesFile))
    # Runs after every child above has finished.
    target.setFollowOnFn(mergeCounts,
                         args=(countFiles, sizesFile, outputFile, summaryFile))
    target.logToMaster(f"Counting the words of {len(inputFiles)} files")


def countFile(target: Target, inputFile: str, countsFile: str) -> None:
    """Counts the words of one file into countsFile (JSON: word -> count)."""
    counts: collections.Counter[str] = collections.Counter()
    with open(inputFile, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            counts.update(WORD.findall(line.lower()))
    # Write the result in this run's private scratch dir first, then publish
    # it into the shared dir with one rename: whoever reads countsFile sees
    # either nothing or the whole file, even if this target is killed midway
    # and run again. The local temp dir is removed when this run ends.
    scratch = os.path.join(target.getLocalTempDir(), "counts.json")
    with open(scratch, "w", encoding="utf-8") as output:
        json.dump(counts, output)
    publish(scratch, countsFile)
    target.logToMaster(f"{os.path.basename(inputFile)}: {sum(counts.values())} "
                       f"words, {len(counts)} different")


def measureInputs(inputFiles: list[str], sizesFile: str) -> None:
    """Records the size in bytes and lines of each input (for the summary)."""
    sizes = {}
    for inputFile in inputFiles:
        with open(inputFile, "rb") as data:
            lines = sum(1 for _ in data)
        sizes[inputFile] = {"bytes": os.path.getsize(inputFile), "lines": lines}
    with open(sizesFile + ".partial", "w", encoding="utf-8") as output:
        json.dump(sizes, output)
    os.replace(sizesFile + ".partial", sizesFile)


def mergeCounts(countFiles: list[str], sizesFile: str, outputFile: str,
                summaryFile: str) -> None:
    """Adds up the counts of all files and writes the table and the summary."""
    total: collections.Counter[str] = collections.Counter()
    for countsFile in countFiles:
        with open(countsFile, encoding="utf-8") as data:
            total.update(json.load(data))
    with open(sizesFile, encoding="utf-8") as data:
        sizes = json.load(data)

    table = sorted(total.items(), key=lambda item: (-item[1], item[0]))
    with open(outputFile + ".partial", "w", encoding="utf-8") as output:
        for word, count in table:
            output.write(f"{word}\t{count}\n")
    os.replace(outputFile + ".partial", outputFile)

    summary = {
        "files": len(countFiles),
        "bytes": sum(size["bytes"] for size in sizes.values()),
        "lines": sum(size["lines"] for size in sizes.values()),
        "words": sum(total.values()),
        "distinctWords": len(total),
        "top": table[:10],
    }
    with open(summaryFile + ".partial", "w", encoding="utf-8") as output:
        json.dump(summary, output, indent=2)
        output.write("\n")
    os.replace(summaryFile + ".partial", summaryFile)


def publish(source: str, destination: str) -> None:
    """Copies source to destination so that destination appears all at once."""
    partial = f"{destination}.partial-{os.getpid()}"
    shutil.copyfile(source, partial)
    os.replace(partial, destination)


# --- Making test data. -------------------------------------------------------


def makeVocabulary(rng: random.Random, size: int) -> list[str]:
    """Pronounceable made-up words, a few with apostrophes or digits."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "an", "el",
                 "or", "ust", "pre", "qua", "zen", "bri", "cho", "dy", "fa", "gu"]
    words: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choices(syllables, k=rng.randint(1, 4)))
        roll = rng.random()
        if roll < 0.03:
            word += "'s"
        elif roll < 0.05:
            word += str(rng.randint(0, 99))
        words.add(word)
    return sorted(words)


def generateTexts(inputDir: str, files: int, size: int, seed: int) -> None:
    """Writes `files` text files of about `size` bytes each into inputDir.

    Word frequencies follow Zipf's law like real text; words come capitalised
    now and then and are separated by spaces and punctuation.
    """
    rng = random.Random(seed)
    vocabulary = makeVocabulary(rng, 2000)
    rng.shuffle(vocabulary)  # so the most frequent words are not "a..."
    weights = [1 / rank for rank in range(1, len(vocabulary) + 1)]
    os.makedirs(inputDir, exist_ok=True)
    for index in range(files):
        written = 0
        with open(os.path.join(inputDir, f"text-{index:05d}.txt"), "w",
                  encoding="utf-8") as output:
            while written < size:
                words = rng.choices(vocabulary, weights, k=rng.randint(3, 15))
                words = [w.capitalize() if rng.random() < 0.1 else w for w in words]
                separators = rng.choices([" ", " ", " ", ", ", "; ", " - "], k=len(words) - 1)
                line = words[0] + "".join(s + w for s, w in zip(separators, words[1:]))
                line += rng.choice([".", "!", "?", ""]) + "\n"
                output.write(line)
                written += len(line)


def parseSize(text: str) -> int:
    """Parses a size such as 100K, 10M or 12345 (binary units) into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kKmMgG]?)[bB]?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 100K or 10M")
    scale = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


# --- The command line. -------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Counts the words of the *.txt files of a directory in parallel.")
    parser.add_argument("--inputDir", required=True, metavar="DIR",
                        help="Count the words of every *.txt file in this directory.")
    parser.add_argument("--output", default="wordcounts.tsv", metavar="FILE",
                        help="The word<TAB>count table (default wordcounts.tsv).")
    parser.add_argument("--summary", default=None, metavar="FILE",
                        help="A JSON summary of the counts (default OUTPUT.summary.json).")
    parser.add_argument("--generate", type=int, default=None, metavar="FILES",
                        help="First write FILES random text files into --inputDir.")
    parser.add_argument("--fileSize", type=parseSize, default=parseSize("100K"),
                        help="About how big each generated file is (default 100K).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Random seed for --generate (default 0).")
    Stack.addJobTreeOptions(parser)
    options = parser.parse_args(argv)

    inputDir = os.path.abspath(options.inputDir)
    outputFile = os.path.abspath(options.output)
    summaryFile = os.path.abspath(options.summary or options.output + ".summary.json")

    # jobTree continues a tree whose directory exists instead of starting anew.
    jobTreeDir = os.path.expanduser(getattr(options, "jobTree", None) or "./jobTree")
    resuming = os.path.exists(jobTreeDir)
    if options.generate is not None:
        if resuming:
            print(f"{jobTreeDir} exists, so this run resumes it: not generating "
                  f"new texts", file=sys.stderr)
        else:
            generateTexts(inputDir, options.generate, options.fileSize, options.seed)
    inputFiles = sorted(glob.glob(os.path.join(inputDir, "*.txt")))
    if not inputFiles:
        parser.error(f"no *.txt files in {inputDir} (use --generate FILES to make some)")

    root = Target.makeTargetFn(countWords, args=(inputFiles, outputFile, summaryFile))
    failed = Stack(root).startJobTree(options)
    if failed:
        print(f"wordcount.py: {failed} target(s) failed; fix the cause and run the "
              f"same command again to resume the tree in {jobTreeDir}", file=sys.stderr)
        return 1
    print(f"Counted the words of {len(inputFiles)} files into {outputFile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
