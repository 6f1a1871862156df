"""PyTorch as a peer of the `train` benchmark (test/bench/suites/train.ts, test/bench/peers/torch.ts).

Trains the benchmark's MLP 784-256-128-10 (relu), batch 128, SGD with lr 0.1, float32, on the CPU
with a fixed number of intra-op threads: forward, mean softmax cross-entropy, backward, update, and
the loss read back each step (as the runtime's step resolves with its loss). The data are seeded
random batches of MNIST's shapes (pixels in [0, 1), labels 0-9): throughput does not depend on them.

Protocol, one JSON object per line: on start it prints {"ready": true, "torch": version, "threads":
n}; then for each line {"steps": n} read from stdin it runs n steps and prints {"ms": [...]}, each
step's wall time in milliseconds. It exits at the end of stdin. Nothing is downloaded.

    python3 test/bench/peers/torch_train.py --threads 1
"""

import argparse
import json
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # Set before torch loads its BLAS, which reads them once: a torch built on a system BLAS
    # (OpenBLAS) does not pass set_num_threads on to it, and it would use every core.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    # OpenMP threads that spin while they wait collapse on a shared machine: 2 threads took 76-108
    # ms a step spinning, 2.3 ms passive, 1 thread 1.9 ms (2 vCPUs, load 11). Passive unless set.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)

    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    data = [
        (torch.rand(args.batch, 784), torch.randint(0, 10, (args.batch,)))
        for _ in range(args.batches)
    ]

    def step(i: int) -> float:
        x, y = data[i % len(data)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    served = 0
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}))
    sys.stdout.flush()
    for line in sys.stdin:
        steps = int(json.loads(line)["steps"])
        times = []
        for i in range(steps):
            start = time.perf_counter()
            step(served + i)
            times.append((time.perf_counter() - start) * 1000)
        served += steps
        print(json.dumps({"ms": times}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
