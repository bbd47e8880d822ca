"""Write the offline help pages of the algorithms: ``help/<name>.html`` and ``help/index.html``.

Each page is generated from the algorithm itself (its ``shortHelpString()``, which holds the
parameter help declared beside each parameter, and its outputs), so the pages never drift
from the dialogs. ``make package`` runs this on the copy that goes into the zip; each
algorithm's ``helpUrl()`` points at its page when the page is there.

    .venv/bin/python scripts/build_help.py [PLUGIN_DIR]   (default: this repository)
"""

import argparse
import html
import os
import sys

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:52em;margin:1.5em auto;line-height:1.45;
padding:0 1em}} dt{{margin-top:.6em}} code{{background:#f3f3f3}}</style></head>
<body>
{body}
</body></html>
"""


def algorithm_page(algorithm, version):
    outputs = [f"<dt><b>{html.escape(o.description())}</b> ({html.escape(o.name())})</dt>"
               for o in algorithm.outputDefinitions()]
    body = [f"<h1>{html.escape(algorithm.displayName())}</h1>",
            f"<p>Tessera {html.escape(version)} · group <i>{html.escape(algorithm.group())}</i>"
            f" · id <code>tessera:{html.escape(algorithm.name())}</code></p>",
            algorithm.shortHelpString()]
    if outputs:
        body += ["<h3>Outputs</h3><dl>", *outputs, "</dl>"]
    body.append('<p><a href="index.html">All Tessera algorithms</a></p>')
    return PAGE.format(title=html.escape(f"Tessera: {algorithm.displayName()}"),
                       body="\n".join(body))


def index_page(algorithms, version):
    items = [f'<li><a href="{a.name()}.html">{html.escape(a.displayName())}</a> '
             f"({html.escape(a.group())})</li>" for a in algorithms]
    return PAGE.format(title="Tessera algorithms", body="\n".join(
        [f"<h1>Tessera {html.escape(version)}: algorithms</h1>", "<ul>", *items, "</ul>"]))


def build(plugin_dir, output=None):
    """Write the pages for the plugin in ``plugin_dir`` (a folder named ``tessera``)."""
    from qgis.core import QgsApplication

    plugin_dir = os.path.abspath(plugin_dir)
    output = output or os.path.join(plugin_dir, "help")
    if QgsApplication.instance() is None:
        build.app = QgsApplication([], False)
        build.app.initQgis()
    parent = os.path.dirname(plugin_dir)
    name = os.path.basename(plugin_dir)
    sys.path.insert(0, parent)
    from importlib import import_module

    base = import_module(f"{name}.algorithms.base")
    algorithms = import_module(f"{name}.algorithms").all_algorithms()
    version = base.plugin_version()
    os.makedirs(output, exist_ok=True)
    for algorithm in algorithms:
        algorithm.initAlgorithm({})
        with open(os.path.join(output, f"{algorithm.name()}.html"), "w", encoding="utf-8") as f:
            f.write(algorithm_page(algorithm, version))
    with open(os.path.join(output, "index.html"), "w", encoding="utf-8") as stream:
        stream.write(index_page(algorithms, version))
    return [os.path.join(output, f"{a.name()}.html") for a in algorithms]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plugin_dir", nargs="?",
                        default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--output", help="folder of the pages (default: PLUGIN_DIR/help)")
    arguments = parser.parse_args()
    pages = build(arguments.plugin_dir, arguments.output)
    print(f"{len(pages)} help pages in {os.path.dirname(pages[0])}")


if __name__ == "__main__":
    main()
