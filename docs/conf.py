"""Sphinx configuration of pcoreset's documentation.

Build it (HTML, then every example executed) with ``bash docs/build.sh``.
"""
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)                          # the checkout, with its in-place built extension
sys.path.insert(0, os.path.join(DOCS, "_ext"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pcoreset  # noqa: E402

project = "pcoreset"
author = "pcoreset developers"
copyright = "2025-2026, pcoreset developers"
release = pcoreset.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "pcoreset_docs",
]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "k-center greedy in probability space", "fixed_sidebar": True}
html_static_path = []

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Every example runs in its own fresh temporary folder, on the CPU, quietly.
doctest_global_setup = """
import os as _os, shutil as _shutil, tempfile as _tempfile
_docs_cwd = _os.getcwd()
_docs_tmp = _tempfile.mkdtemp(prefix="pcoreset-docs-")
_os.chdir(_docs_tmp)
import numpy as np
np.set_printoptions(precision=4, suppress=True)
"""
doctest_global_cleanup = """
_os.chdir(_docs_cwd)
_shutil.rmtree(_docs_tmp, ignore_errors=True)
"""
