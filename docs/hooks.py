"""mkdocs hook: pages generated at build time, so they cannot drift from the code.

- lessons/<scenario>.md for every shipped scenario: what it teaches (docs/lessons.yaml), the
  scenario, its topology as SVG (Graphviz), its `--explain` commands, what its checks prove, and
  the exercise that practises it (docs/exercises.yaml);
- exercises/<exercise>.md for every shipped exercise: its intro, its tasks and what grades each
  (never its hints or its reference solution), the command that starts it;
- syntax.md from the composed model's JSON Schema;
- cli.md from the argparse parser.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import yaml
from mkdocs.structure.files import File

from vnetlab.cli import build_parser
from vnetlab.compose import load_scenario, registry
from vnetlab.model.schema import scenario_schema
from vnetlab.model.typed_yaml import yaml_key
from vnetlab.paths import exercise_files, scenario_files
from vnetlab.plan.planner import make_plan
from vnetlab.tools.explain import explain
from vnetlab.tools.graph import to_dot, to_svg, topology

DOCS = Path(__file__).parent
EXPECTATIONS = {
    "arp": "the ARP request and its reply",
    "icmp-echo": "the ICMP echo requests and replies of the pings",
    "bridged": "frames carrying the sender's own MAC and address (bridged, no router in between)",
    "masqueraded": "only the NAT's outside address (the uplink's, or the router VM's), never a private one (masqueraded)",
    "wireguard-udp": "the tunnel's encrypted UDP between the underlay addresses",
    "no-plaintext-tunnel": "no readable ICMP of the tunnel's subnet",
    "wireguard-handshake": "a WireGuard handshake: an initiation one way, a response back",
    "only-wireguard": "nothing between the underlay addresses but the tunnel's UDP",
    "routed": "echo requests arriving with their TTL decremented (they crossed a router)",
    "frag-needed": "an ICMP \"fragmentation needed\" from the router to the sender",
    "bounded-broadcast": "at most 100 broadcast frames on the bridge during the whole check phase (no broadcast storm)",
    "vxlan": "UDP port 4789 datagrams between the underlay addresses, with the tunnel's VNI, carrying the echo pairs",
    "unencapsulated": "the echo pairs as plain Ethernet frames and not one VXLAN (UDP 4789) datagram",
}


def _plain(value: object) -> object:
    """A check's spec as the YAML a scenario would write (nested mappings, no None)."""
    if dataclasses.is_dataclass(value):
        return {yaml_key(f): _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if getattr(value, f.name) is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _flow(spec: object) -> str:
    return yaml.safe_dump(_plain(spec), default_flow_style=True, width=10_000, sort_keys=False).strip()


def check_sentence(check: object) -> str:
    kind, spec = check.kind, check.spec
    if kind == "ping":
        via = f" through `{spec.via}`" if getattr(spec, "via", None) else ""
        verdict = "no reply may come back" if spec.expect == "failure" else "every request must be answered"
        return f"`{spec.source}` sends {spec.count} echo request(s) to `{spec.to}`{via}; {verdict}."
    if kind == "capture":
        seen = "; ".join(EXPECTATIONS.get(e, e) for e in spec.expect)
        return f"A capture on `{spec.on}` for the whole check phase must show, between `{spec.between[0]}` and `{spec.between[1]}`: {seen}."
    if kind == "command":
        return f"`{spec.run}` on `{spec.node}` must give `{_flow(spec.expect)}`" + (f", retried for {spec.retry.for_} s" if spec.retry else "") + "."
    return f"`{kind}: {_flow(spec)}` (judged by vnetlab; the report says what was expected and seen)."


def lesson_page(path: Path, teaches: str, exercise: str | None = None) -> tuple[str, str]:
    scenario = load_scenario(path)
    practise = f"""
Practise it: the exercise [{exercise}](../exercises/{exercise}.md) builds this lab with a part left
undone, and grades what you do on what crosses the wire (`vnetlab exercise start {exercise}`).
""" if exercise else ""
    plan = make_plan(scenario, scenario.name)
    svg = to_svg(to_dot(topology(plan, management=False))).decode()
    checks = "\n".join(f"{i}. {check_sentence(c)}" for i, c in enumerate(scenario.checks, 1)) or "(none)"
    page = f"""# {scenario.name}

{scenario.description}

{teaches.strip()}

```sh
vnetlab run {scenario.name}              # up, checks, summary, teardown
vnetlab plan {scenario.name} --explain   # the same lab as commands to type by hand
```
{practise}
## Topology

![topology of {scenario.name}]({scenario.name}.svg)

## The scenario

```yaml
{path.read_text().rstrip()}
```

## What its checks prove

{checks}

## By hand: `vnetlab plan {scenario.name} --explain`

```sh
{explain(plan).rstrip()}
```
"""
    return page, svg


# -- exercise pages: what a student may read before starting (no hints, no reference solution) --

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def _yours(text: str) -> str:
    """Templates shown as the value they stand for: `{{ vm2.eth0.address }}` → ‹vm2.eth0.address›
    (`exercise start` prints each student's own)."""
    return _TEMPLATE.sub(lambda m: f"‹{m.group(1)}›", str(text))


def _graded_by(check: dict) -> str:
    """A task's check in a few words, from the file (its values are the student's: not rendered here)."""
    kind, spec = next(iter(check.items()))
    if kind == "answer":
        return "your answer (`exercise answer`)"
    if kind == "ping":
        seen = f" through {spec['via']}, seen on the wire as the tunnel's UDP" if spec.get("via") else ", its echo seen on the wire"
        return f"ping {spec['from']} → {spec['to']}" + (" must fail" if spec.get("expect") == "failure" else "") + seen
    if kind == "capture":
        on = spec.get("bridge") or spec.get("link") or spec.get("interface")
        return f"on the wire at {on}, between {' and '.join(spec['between'])}: " + "; ".join(EXPECTATIONS.get(e, e) for e in spec["expect"])
    if kind == "wireguard":
        return f"a WireGuard handshake {' ↔ '.join(spec['between'])} on {spec['tunnel']}" + (", made during the check" if spec.get("rekey") else "") + " (`wg show` in the guests)"
    if kind == "pmtu":
        verdict = {"failure": "must not cross", "frag-needed": "a router must answer fragmentation needed"}.get(spec.get("expect", "success"), "must cross whole")
        return f"don't-fragment pings {spec['from']} → {spec['to']} of {spec['size']} + 28 bytes: {verdict} (ping's output in the guest)"
    if kind == "command":
        return f"{spec.get('name') or spec['run']} (a command in {spec['node']}: evidence from inside a guest)"
    return f"{kind} check"


def exercise_page(path: Path, lesson: str | None) -> tuple[str, str, str]:
    """(page, title, description) of one exercise file."""
    doc = yaml.safe_load(path.read_text())
    ex = doc["exercise"]
    params = ", ".join(f"`{k}`" for k in doc.get("params", {})) or "none"
    rows = []
    for task in ex["tasks"]:
        graded = "<br>".join(_yours(_graded_by(c)).replace("|", "\\|") for c in task["checks"])
        rows.append(f"| {task['name']} | {task.get('points', 1)} | {len(task.get('hints', []))} | {graded} |")
    tasks = "\n\n".join(f"**{t['name']}** ({t.get('points', 1)} point(s))\n\n{_yours(t['text']).strip()}" for t in ex["tasks"])
    page = f"""# {ex['title']} — `{path.stem}`

{doc['description']}
{f"Practises the lesson [{lesson}](../lessons/{lesson}.md)." if lesson else ""}

```sh
vnetlab exercise start {path.stem} --student YOUR-ID   # builds your lab, prints your values and tasks
```

Values in ‹…› are yours: they come from your student id (params: {params}), and `exercise start`
prints them. Time: {ex.get('time-limit', 'no limit')} (recorded, never enforced). How to work on it:
[doing exercises](../exercises-doing.md).

## What you start with

{_yours(ex.get('intro', '')).strip()}

## Tasks

{tasks}

## How each task is graded

| task | points | hints | graded by |
|---|---|---|---|
{chr(10).join(rows)}
"""
    return page, ex["title"], doc["description"]


def _type(prop: dict) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"] if p.get("type") != "null")
    if prop.get("type") == "array":
        return f"list of {_type(prop['items'])}"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    text = prop.get("type", "")
    if "pattern" in prop:
        text += f" `{prop['pattern']}`"
    if "minimum" in prop:
        text += f" {prop['minimum']}–{prop['maximum']}"
    if "maxLength" in prop:
        text += f" (≤ {prop['maxLength']} chars)"
    return text


def syntax_page() -> str:
    schema = scenario_schema(registry())
    sections = [("Scenario", schema), *schema["$defs"].items()]
    out = [
        "# Scenario syntax",
        "",
        "Generated from the model at build time (`vnetlab schema` prints the same as JSON Schema).",
        "A scenario is a YAML mapping; unknown keys are errors, reported with their line.",
        "Cross-field rules (references, subnets, unique names and addresses) are checked as well",
        "and reported the same way.",
    ]
    for name, definition in sections:
        out += ["", f"## {name}", ""]
        if definition.get("description"):
            out += [definition["description"], ""]
        if "oneOf" in definition:
            out += ["Exactly one of these keys per entry.", ""]
        out += ["| key | type | required | default | meaning |", "|---|---|---|---|---|"]
        required = set(definition.get("required", []))
        for key, prop in definition["properties"].items():
            default = f"`{yaml.safe_dump(prop['default'], default_flow_style=True).strip().removesuffix('...').strip()}`" if "default" in prop else ""
            out.append(f"| `{key}` | {_type(prop)} | {'yes' if key in required else ''} | {default} | {prop.get('description', '')} |")
    return "\n".join(out) + "\n"


def cli_page() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: fixed, so the page is stable
    parser = build_parser()
    out = ["# Command line", "", "Generated from the argument parser at build time.", "", "```text", parser.format_help().rstrip(), "```"]
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in commands.choices.items():
        out += ["", f"## vnetlab {name}", "", "```text", sub.format_help().rstrip(), "```"]
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        for action in nested:
            for child, parser_ in action.choices.items():
                out += ["", f"### vnetlab {name} {child}", "", "```text", parser_.format_help().rstrip(), "```"]
    return "\n".join(out) + "\n"


def on_files(files, config):
    teaches = yaml.safe_load((DOCS / "lessons.yaml").read_text())
    practised = yaml.safe_load((DOCS / "exercises.yaml").read_text())  # exercise → lesson
    exercise_of = {lesson: exercise for exercise, lesson in practised.items()}
    index = ["# Lessons", "", "Each lesson is a scenario you run with `vnetlab run NAME`; every page below is generated from it.", "", "| lesson | what it shows |", "|---|---|"]
    for path in scenario_files():
        page, svg = lesson_page(path, teaches.get(path.stem, ""), exercise_of.get(path.stem))
        files.append(File.generated(config, f"lessons/{path.stem}.md", content=page))
        files.append(File.generated(config, f"lessons/{path.stem}.svg", content=svg))
        index.append(f"| [{path.stem}]({path.stem}.md) | {load_scenario(path).description} |")
    files.append(File.generated(config, "lessons/index.md", content="\n".join(index) + "\n"))
    exercises = ["# Exercises", "", "Each exercise is a lab with a part left for you to do; [doing exercises](../exercises-doing.md) says how,",
                 "[writing exercises](../exercises-writing.md) how to make your own.", "", "| exercise | what you do | lesson |", "|---|---|---|"]
    for path in exercise_files():
        page, title, description = exercise_page(path, practised.get(path.stem))
        files.append(File.generated(config, f"exercises/{path.stem}.md", content=page))
        lesson = practised.get(path.stem)
        exercises.append(f"| [{title}]({path.stem}.md) (`{path.stem}`) | {description} | " + (f"[{lesson}](../lessons/{lesson}.md)" if lesson else "") + " |")
    files.append(File.generated(config, "exercises/index.md", content="\n".join(exercises) + "\n"))
    files.append(File.generated(config, "syntax.md", content=syntax_page()))
    files.append(File.generated(config, "cli.md", content=cli_page()))
    return files
