"""Third step (script): report what the notebook found."""
import json

with open("results/summary.json") as f:
    summary = json.load(f)
print(f"{summary['above']} of {summary['count']} samples are above {summary['threshold']}")
print("mean value:", summary["mean"])
