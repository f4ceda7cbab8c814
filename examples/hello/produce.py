"""First step: produce some numbers for the next step, slowly enough to watch it live."""
import os
import time

print("producing numbers...")
time.sleep(1.5)
os.makedirs("data", exist_ok=True)
with open("data/numbers.txt", "w") as f:
    for i in range(1, 6):
        f.write(f"{i}\n")
        print(f"wrote {i}")
        time.sleep(0.3)
print("done: data/numbers.txt is ready for the next step")
