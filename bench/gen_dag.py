#!/usr/bin/env python3
"""Random DAGs for the planner benchmark.

A DAG of N nodes and E distinct edges: node ids n0..n(N-1) are put in a
random topological order and every edge points forward in it, so the graph
is acyclic by construction but its ids say nothing about the order. The
same seed gives the same files.

Writes three views of one graph:
  PREFIX.json        the JSON builder format as the visual builder writes it:
                     nodes plus one connection object per edge; module-free
                     (moduleId "noop": rz_flow_validate(flow, NULL, ...) takes it)
  PREFIX.needs.json  the same flow with each edge as a `needs` entry on its
                     target node (builder nodes accept the FluxGraph fields)
  PREFIX.edges       "a b" per line for tsort(1) and graphlib; a node without
                     edges appears as "a a", which both read as a lone node
"""
import argparse
import random
import sys


def make_edges(n, e, rng):
    """E distinct forward edges over a random permutation of n nodes."""
    if n < 2:
        return list(range(n)), []
    max_e = n * (n - 1) // 2
    if e > max_e:
        sys.exit(f"gen_dag: {e} edges do not fit in a DAG of {n} nodes")
    order = list(range(n))
    rng.shuffle(order)
    seen = set()
    edges = []
    while len(edges) < e:
        a = rng.randrange(n)
        b = rng.randrange(n)
        if a == b:
            continue
        if a > b:
            a, b = b, a
        key = a * n + b
        if key in seen:
            continue
        seen.add(key)
        edges.append((order[a], order[b]))
    return order, edges


def write_json(path, n, edges):
    ports = [0] * n   # one input port per incoming edge: in0, in1, ...
    with open(path, "w") as f:
        f.write('{"id":"bench","name":"bench-dag","version":"1.0.0",\n"nodes":[\n')
        f.write(",\n".join('{"id":"n%d","moduleId":"noop","config":{}}' % i
                           for i in range(n)))
        f.write('\n],\n"connections":[\n')
        parts = []
        for k, (a, b) in enumerate(edges):
            parts.append('{"id":"e%d","source":{"nodeId":"n%d","port":"out"},'
                         '"target":{"nodeId":"n%d","port":"in%d"}}'
                         % (k, a, b, ports[b]))
            ports[b] += 1
        f.write(",\n".join(parts))
        f.write("\n]}\n")


def write_needs_json(path, n, edges):
    needs = [[] for _ in range(n)]
    for a, b in edges:
        needs[b].append(a)
    with open(path, "w") as f:
        f.write('{"id":"bench","name":"bench-dag","version":"1.0.0",\n"nodes":[\n')
        f.write(",\n".join('{"id":"n%d","moduleId":"noop","needs":[%s]}'
                           % (i, ",".join('"n%d"' % a for a in needs[i]))
                           for i in range(n)))
        f.write('\n],\n"connections":[]}\n')


def write_edges(path, n, edges):
    touched = bytearray(n)
    with open(path, "w") as f:
        for a, b in edges:
            touched[a] = touched[b] = 1
            f.write("n%d n%d\n" % (a, b))
        for i in range(n):
            if not touched[i]:
                f.write("n%d n%d\n" % (i, i))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nodes", type=int)
    ap.add_argument("edges", type=int, nargs="?",
                    help="default: 4 per node")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="dag", help="output prefix")
    args = ap.parse_args()
    if args.nodes < 0:
        sys.exit("gen_dag: nodes must be >= 0")
    n = args.nodes
    e = args.edges if args.edges is not None else min(4 * n, n * (n - 1) // 2)
    rng = random.Random(args.seed)
    _, edges = make_edges(args.nodes, e, rng)
    rng.shuffle(edges)   # file order says nothing about the topology either
    write_json(args.out + ".json", args.nodes, edges)
    write_needs_json(args.out + ".needs.json", args.nodes, edges)
    write_edges(args.out + ".edges", args.nodes, edges)


if __name__ == "__main__":
    main()
