"""Sphinx configuration of the pyg_multirec documentation.

Build (warnings are errors)::

    pip install -e ".[docs]"
    sphinx-build -W -b html docs docs/_build/html

autodoc documents the installed ``pyg_multirec`` (the editable install is this checkout);
``python -m sphinx ...`` run from the repository root imports the checkout without an
install, since ``python -m`` puts the working directory first on ``sys.path``.

Everything needed ships with Sphinx (autodoc, napoleon, mathjax, viewcode, the alabaster
theme); the build needs no network.
"""

from __future__ import annotations

import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

import pyg_multirec

#: Width of the command-line help shown by the ``cli-help`` directive.
HELP_COLUMNS = 92

project = "pyg_multirec"
author = "pyg_multirec developers"
copyright = "pyg_multirec developers, MIT licence"
version = release = pyg_multirec.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# -- autodoc / napoleon --------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
# PyG-style "Shapes:" sections (a bullet list of input and output shapes).
napoleon_custom_sections = ["Shapes"]

# -- HTML ------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"pyg_multirec {release}"
html_theme_options = {
    "description": "PyTorch Geometric building blocks for multimodal recommendation",
    "fixed_sidebar": True,
}


class CliHelp(SphinxDirective):
    """``.. cli-help:: [COMMAND]``: the ``--help`` text of ``pyg-multirec [COMMAND]``."""

    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        from pyg_multirec.cli import build_parser

        parser = build_parser()
        if self.arguments:
            subparsers = next(
                a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
            )
            parser = subparsers.choices[self.arguments[0]]
        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = str(HELP_COLUMNS)  # argparse wraps to the terminal width
        try:
            text = parser.format_help()
        finally:
            if previous is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = previous
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):  # noqa: ANN001, ANN201 (Sphinx's extension hook)
    app.add_directive("cli-help", CliHelp)
    return {"parallel_read_safe": True}
