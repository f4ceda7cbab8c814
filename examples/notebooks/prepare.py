"""First step (script): write the measurements the notebook analyzes."""
import os
import random

random.seed(7)
os.makedirs("data", exist_ok=True)
with open("data/measurements.csv", "w") as f:
    f.write("sample,value\n")
    for i in range(1, 11):
        value = round(random.random(), 3)
        f.write(f"s{i},{value}\n")
        print(f"measured s{i} = {value}", flush=True)
print("wrote data/measurements.csv")
