#!/usr/bin/env python3
"""Prints the allocation stacks holding the most memory at the heap's peak,
from a heaptrack flamegraph file (`heaptrack_print -F FILE
--flamegraph-cost-type peak`). Each stack is shown by its innermost frames
above the allocator, which name the owner (hyper's read buffer, tokio's task
cell, ...).

  bench/heap_top.py STACKS_FILE [TOP]
"""

import sys

ALLOC = ("alloc", "alloc_impl", "alloc_impl_runtime", "allocate", "finish_grow", "grow", "realloc",
         "grow_impl", "grow_impl_runtime", "box_new_uninit", "try_allocate_in", "with_capacity_in",
         "do_reserve_and_handle", "grow_amortized", "reserve", "reserve_inner", "new_uninit_in")


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    stacks = []
    for line in open(path):
        stack, cost = line.rstrip("\n").rsplit(" ", 1)
        stacks.append((int(cost), [f for f in stack.split(";") if f]))
    total = sum(c for c, _ in stacks)
    print(f"peak heap: {total / 1e6:.1f} MB over {len(stacks)} stacks")
    for cost, frames in sorted(stacks, key=lambda s: -s[0])[:top]:
        names = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in frames]
        names = [
            n for n in names
            if n.split("<")[0].split(" (")[0] not in ALLOC and not n.startswith(("_R", "__rust", "new<> (boxed.rs", "pin<> (boxed.rs"))
        ]
        print(f"\n{cost / 1e6:7.2f} MB ({100 * cost / total:4.1f}%)")
        for name in names[-7:]:
            print(f"    {name[:150]}")


if __name__ == "__main__":
    main()
