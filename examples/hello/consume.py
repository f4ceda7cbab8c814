"""Second step: read the file the first step produced and summarize it."""
import time

with open("data/numbers.txt") as f:
    numbers = [int(line) for line in f if line.strip()]
print(f"received {len(numbers)} numbers from produce.py: {numbers}")
time.sleep(1)
total = sum(numbers)
print(f"sum = {total}")
with open("summary.txt", "w") as f:
    f.write(f"sum={total}\n")
