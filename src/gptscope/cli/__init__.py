"""The `gptscope` command. Thin: each subcommand parses arguments and calls the library.

Every module in this package that defines ``register(subparsers)`` adds its subcommands,
so areas (training, interpretability, SAEs, the course) keep their commands to themselves.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sqlite3
import sys
import warnings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptscope",
        description="Build a GPT, train it, and look inside it: on a laptop, offline.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from gptscope import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    command = args.command
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(command)
            return int(args.func(args) or 0)
    except (ValueError, OSError, sqlite3.Error) as e:
        # Library errors already name the problem and the fix: show them without a traceback.
        print(f"gptscope {command}: error: {describe_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _warning_printer(command: str):
    """Warnings as one line each, ``gptscope train: warning: ...``, not Python's two-line
    file:line form (still shown once each, by the usual warning filters)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"gptscope {command}: warning: {message}", file=file or sys.stderr)
    return show


def describe_error(e: BaseException) -> str:
    """The message for an error the CLI reports without a traceback: one line, except a
    library ValueError's own later lines (e.g. the diff of a refused --resume), indented."""
    if isinstance(e, OSError) and e.filename is not None:
        # str(OSError) reads "[Errno 13] Permission denied: 'x'": say the path first.
        what = e.strerror or type(e).__name__
        return f"cannot use {e.filename}: {what}; check the path and its permissions"
    if isinstance(e, UnicodeDecodeError):
        return (f"a file is not UTF-8 text ({e.reason} at byte {e.start}); check that the path "
                "points at the right file")
    if isinstance(e, sqlite3.Error):
        return f"database error ({type(e).__name__}: {e})"
    if isinstance(e, OSError):
        return f"{e.strerror or e}"
    first, *rest = [line for line in str(e).splitlines() if line.strip()] or [""]
    return "\n".join([first, *("  " + line.strip() for line in rest)])
