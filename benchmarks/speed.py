"""Throughput of blind deblurring at 256x256 with the published image+kernel configs
(random weights), over batch sizes and dtypes, at 1000 and 100 steps, next to the
original's choices (reference mode) measured in the same run.

    python benchmarks/speed.py                       # CPU: a small table
    python benchmarks/speed.py --device cuda --batches 1,8,16 --dtypes float32,bfloat16
"""
from sampler import main

if __name__ == "__main__":
    main(defaults={"batches": "1,4", "steps": "1000,100", "dtypes": "float32"})
