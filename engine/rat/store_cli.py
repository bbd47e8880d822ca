"""Looking into a Zarr RAT store without QGIS::

    python -m tessera.engine.rat.store info STORE
    python -m tessera.engine.rat.store columns STORE
    python -m tessera.engine.rat.store head STORE [-n 10] [--start 0] [--columns a,b]

STORE is a local path or an ``s3://bucket/prefix`` URL (``--endpoint-url``
for S3-compatible servers; credentials come from the usual AWS variables or
files). Exit code 0 on success, 1 when the store cannot be read, 2 for a
wrong command line.
"""

import argparse
import sys

import numpy as np

from ..errors import TesseraError

DESCRIPTION = "Look into a Zarr RAT store (a raster attribute table kept in a Zarr group)."


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tessera.engine.rat.store",
                                     description=DESCRIPTION)
    parser.add_argument("--endpoint-url", metavar="URL",
                        help="S3-compatible endpoint for s3:// stores (e.g. http://127.0.0.1:9000)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="rows, chunk size and every column with its type")
    columns = commands.add_parser("columns", help="column names, one per line")
    head = commands.add_parser("head", help="the first rows of some or all columns")
    for command in (info, columns, head):
        command.add_argument("store", metavar="STORE", help="store path or s3://bucket/prefix")
    head.add_argument("-n", "--rows", type=_non_negative, default=10,
                      help="rows to show (default 10)")
    head.add_argument("--start", type=_non_negative, default=0,
                      help="first row to show (default 0)")
    head.add_argument("--columns", default="",
                      help="comma-separated column names (default: all)")
    return parser


def _non_negative(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def main(argv=None, out=None):
    """Run the command line; returns the exit code."""
    out = out or sys.stdout
    arguments = build_parser().parse_args(argv)
    options = {"client_kwargs": {"endpoint_url": arguments.endpoint_url}} \
        if arguments.endpoint_url else None
    try:
        from .store import RatStore

        with RatStore(arguments.store, read_only=True, create=False,
                      storage_options=options) as store:
            if arguments.command == "info":
                print_info(store, out)
            elif arguments.command == "columns":
                for name in store.column_names():
                    print(name, file=out)
            else:
                print_head(store, arguments.start, arguments.rows,
                           _names(arguments.columns), out)
    except TesseraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def print_info(store, out):
    names = store.column_names()
    print(f"Store:      {store.name}", file=out)
    where = "S3" if store.location.is_remote else "local"
    print(f"Location:   {where}", file=out)
    print(f"Rows:       {store.row_count}", file=out)
    print(f"Chunk size: {store.chunk_size}", file=out)
    print(f"Columns:    {len(names)}", file=out)
    if not names:
        return
    rows = [("column", "type", "width", "chunk", "last written (UTC)", "by")]
    for name in names:
        log = store.modification_log(name)
        when, user = (log[-1][0].strftime("%Y-%m-%d %H:%M:%S"), log[-1][1]) if log else ("-", "-")
        kind = "string" if store.column_is_string(name) else str(store.column_dtype(name))
        rows.append((name, kind, str(store.column_width(name)),
                     str(store.column_chunk_size(name)), when, user))
    print(file=out)
    _print_table(rows, out)


def print_head(store, start, count, names, out):
    names = names or store.column_names()
    for name in names:
        if not store.has_column(name):
            raise TesseraError(f"The Zarr RAT store {store.name} has no column '{name}' "
                               f"(it has: {', '.join(store.column_names()) or 'none'}).")
    blocks = [store.read_block(name, start, count) for name in names]
    shown = min([len(block) for block in blocks], default=0)
    rows = [("row", *names)]
    for index in range(shown):
        rows.append((str(start + index), *(_text(block[index]) for block in blocks)))
    _print_table(rows, out)
    if not names:
        print("(no columns)", file=out)
    print(f"({shown} of {store.row_count} rows)", file=out)


def _text(value):
    if isinstance(value, np.ndarray):
        return "[" + " ".join(_text(v) for v in value) + "]"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    return str(value)


def _print_table(rows, out):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip(), file=out)
