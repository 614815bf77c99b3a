#!/usr/bin/env bash
# Build the documentation: HTML pages with the example gallery (every
# docs/gallery/plot_*.py runs and its figures are kept), then every example of
# every page executed (sphinx.ext.doctest), warnings as errors. Output:
# OUT/html (default _build/docs/html).
#
# Needs pcoreset installed with the docs and all extras, as the README says:
#   pip install ".[all,docs]" && bash docs/build.sh
# (a checkout built in place is documented instead; see docs/conf.py). The
# ActiveKD gallery example needs the wordnet-base Debian package.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-_build/docs}"
python3 -m sphinx -W --keep-going -q -b html docs "$out/html"
python3 -m sphinx -W --keep-going -q -b doctest docs "$out/doctest"
tail -4 "$out/doctest/output.txt"
echo "docs: $out/html/index.html"
