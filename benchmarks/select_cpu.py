"""CPU selection benchmark: `python -m benchmarks.select_cpu [--preset targets]`.

Prints, for clustered pools, the paper's algorithm, a vectorised PyTorch
running minimum, NumPy and each pcoreset backend side by side (see
pcoreset/bench.py for what each row measures). Same as `pcoreset bench`.
"""
import argparse
import sys

from pcoreset.bench import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(preset="targets")
    sys.exit(main(parser.parse_args()))
