"""Decoding-speed benchmark: a thin wrapper so `python benchmarks/decode_speed.py ...` and
`paragen bench ...` are the same program (see paragen/commands/bench.py for the protocol)."""
import argparse
import sys

from paragen.commands import bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=bench.__doc__)
    bench.add_arguments(parser)
    sys.exit(bench.run(parser.parse_args()))
