"""Sphinx configuration of pcoreset's documentation.

Build it (HTML with the example gallery, then every example executed) with
``bash docs/build.sh``.

Which pcoreset is documented: a checkout whose C++ module was built in place
(a developer's working tree) is used as it is; otherwise the installed package
(``pip install ".[all,docs]"``, as the README says), never a checkout without
its compiled module.
"""
import glob
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
if glob.glob(os.path.join(ROOT, "pcoreset", "_C*.so")) or glob.glob(os.path.join(ROOT, "pcoreset", "_C*.pyd")):
    sys.path.insert(0, ROOT)                      # the checkout, with its in-place built extension
else:
    # `python -m sphinx` run from the repository root puts the root on the
    # path: take it off, so that the installed package (with its module) is used
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
sys.path.insert(0, os.path.join(DOCS, "_ext"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pcoreset  # noqa: E402

try:
    from pcoreset import _C  # noqa: E402,F401
except ImportError as exc:  # pragma: no cover - a broken install
    raise RuntimeError(
        f"the docs need pcoreset with its C++ module; {pcoreset.__file__} has none ({exc}). "
        'Install it (pip install ".[all,docs]") or build it in place '
        "(python setup.py build_ext --inplace)") from exc
# where the pcoreset being documented lives: the `command` directive runs it from there
PCORESET_PATH = os.path.dirname(os.path.dirname(os.path.abspath(pcoreset.__file__)))
os.environ["PCORESET_DOCS_PATH"] = PCORESET_PATH

project = "pcoreset"
author = "pcoreset developers"
copyright = "2025-2026, pcoreset developers"
release = pcoreset.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "pcoreset_docs",
]
exclude_patterns = ["_build", "gallery/README.rst"]

# furo: a wide content column (code blocks are not cut at 1280 px), a light and
# a dark scheme, the page's sections in a right-hand sidebar
html_theme = "furo"
html_title = f"pcoreset {release}"
html_theme_options = {
    "sidebar_hide_name": False,
    "navigation_with_keys": True,
}
html_static_path = ["_static"]
html_css_files = ["pcoreset.css"]
pygments_style = "friendly"
pygments_dark_style = "monokai"

# copy buttons: copy the commands and code, not the prompts or the output
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True

# The gallery: every docs/gallery/plot_*.py runs during the HTML build and its
# figures are shown under its code. Examples that did not change since the last
# build are not run again (sphinx-gallery compares their checksums).
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
}

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
