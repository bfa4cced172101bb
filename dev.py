#!/usr/bin/env python3
"""Zero-setup entry point: needs nothing but Python 3.11+.

    python3 dev.py serve [ARGS...]   install into ./.venv (once), then `watchledger serve ARGS...`
    python3 dev.py test  [ARGS...]   install into ./.venv (once), then ruff, mypy and pytest ARGS...
    python3 dev.py pytest [ARGS...]  install, then pytest ARGS... alone
    python3 dev.py run CMD [ARGS...] install, then any `watchledger` command (bench, migrate, ...)

The virtual environment is reinstalled only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("WATCHLEDGER_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".watchledger-installed"


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def ensure_installed() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - says so clearly on an older Python
        sys.exit(f"watchledger needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing watchledger and its development tools", file=sys.stderr)
    _run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]")
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    ensure_installed()
    if command == "serve":
        os.execv(BIN / "watchledger", [str(BIN / "watchledger"), "serve", *rest])
    if command == "run":
        os.execv(BIN / "watchledger", [str(BIN / "watchledger"), *rest])
    if command == "test":
        checks = [
            [str(BIN / "ruff"), "check", "."],
            [str(BIN / "ruff"), "format", "--check", "."],
            [str(BIN / "mypy")],
        ]
        for check in checks:
            print(
                "dev.py:",
                " ".join(Path(check[0]).name if i == 0 else a for i, a in enumerate(check)),
                file=sys.stderr,
                flush=True,
            )
            if subprocess.run(check, cwd=ROOT).returncode:
                return 1
        return subprocess.run([str(BIN / "pytest"), *rest], cwd=ROOT).returncode
    if command == "pytest":
        return subprocess.run([str(BIN / "pytest"), *rest], cwd=ROOT).returncode
    print(f"dev.py: unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
