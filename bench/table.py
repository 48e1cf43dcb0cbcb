"""Publish the latest benchmark figures (bench/results.json) as the table in README.md and at the
top of docs/benchmark.md, between their `<!-- bench:begin -->` and `<!-- bench:end -->` lines: the
table is always what the benchmarks last measured, never typed by hand.

A row is one benchmark on one host release (Debian 12 from `make bench` on the machine itself,
Debian 13 from `make prove-debian13`). A row already on the page that results.json does not hold
(measured on another release, or by an earlier checkout) is kept as it is, so that publishing one
release's figures never drops another's. Rows from before the host column were all measured on
Debian 12. Standard library only: any python3 can run it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from results import RESULTS, key, load  # bench/results.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
PAGES = (ROOT / "README.md", ROOT / "docs" / "benchmark.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
COLUMNS = ("name", "host", "measured", "raw", "ratio", "rounds", "date", "machine", "note")
HEADER = "| benchmark | host | vnetlab | raw qemu | ratio (median, range) | rounds | date | machine | note |"
LEGACY_HOST = "Debian 12"  # every row published before the host column was measured on this Debian 12 machine


def rows_on_page(block: str) -> dict[str, dict]:
    """The rows of a published table, by benchmark and host (a table without the host column too)."""
    rows: dict[str, dict] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or cells[0] in ("benchmark", "") or set(cells[0]) <= {"-"}:
            continue
        if len(cells) == len(COLUMNS) - 1:
            cells.insert(1, LEGACY_HOST)
        if len(cells) == len(COLUMNS):
            row = dict(zip(COLUMNS, cells))
            rows[key(row["name"], row["host"])] = row
    return rows


def _with_host(name: str, r: dict) -> dict:
    """An entry of results.json; one written before entries named their host was keyed by its name alone."""
    return r if "host" in r else {**r, "name": name, "host": LEGACY_HOST}


def table(rows: dict[str, dict]) -> str:
    lines = [HEADER, "|" + "---|" * len(COLUMNS)]
    for r in sorted(rows.values(), key=lambda r: (r["name"], r["host"])):
        lines.append("| " + " | ".join(str(r.get(c, "")) or "—" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> int:
    results = load()
    if not results:
        raise SystemExit(f"no {RESULTS}: run `make bench` (or `make prove-debian13`) first")
    for page in PAGES:
        text = page.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{page} has no {BEGIN} … {END} block")
        head, rest = text.split(BEGIN, 1)
        block, tail = rest.split(END, 1)
        rows = rows_on_page(block) | {key(r["name"], r["host"]): r for r in (_with_host(k, r) for k, r in results.items())}
        page.write_text(f"{head}{BEGIN}\n{table(rows)}\n{END}{tail}")
        print(f"wrote the table of {len(rows)} benchmark(s) into {page} ({len(results)} from {RESULTS.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
