"""Third step: report the summary, with a dependency file shipped alongside."""
from helpers import banner

with open("summary.txt") as f:
    print(banner(f.read().strip()))
