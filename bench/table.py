"""Publish the latest benchmark figures (bench/results.json) as the table in README.md and at the
top of docs/benchmark.md, between their `<!-- bench:begin -->` and `<!-- bench:end -->` lines: the
table is always what `make bench` last measured, never typed by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import RESULTS

ROOT = Path(__file__).resolve().parent.parent
PAGES = (ROOT / "README.md", ROOT / "docs" / "benchmark.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def table(results: dict) -> str:
    lines = [
        "| benchmark | vnetlab | raw qemu | ratio (median, range) | rounds | date | machine | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(results.items()):
        lines.append(f"| {name} | {r['measured']} | {r['raw']} | {r['ratio']} | {r['rounds']} | {r['date']} | {r['machine']} | {r['note']} |")
    return "\n".join(lines)


def main() -> int:
    try:
        results = json.loads(RESULTS.read_text())
    except OSError:
        raise SystemExit(f"no {RESULTS}: run `make bench` first") from None
    for page in PAGES:
        text = page.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{page} has no {BEGIN} … {END} block")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        page.write_text(f"{head}{BEGIN}\n{table(results)}\n{END}{tail}")
        print(f"wrote the table of {len(results)} benchmark(s) into {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
