"""The jobTree commands: jobTreeRun, jobTreeStatus, jobTreeKill, jobTreeStats, jobTreeClean."""
