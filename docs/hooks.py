"""mkdocs hook: pages generated at build time, so they cannot drift from the code.

- lessons/<scenario>.md for every shipped scenario: what it teaches (docs/lessons.yaml), the
  scenario, its topology as SVG (Graphviz), its `--explain` commands, what its checks prove, and
  the exercise that practises it (docs/exercises.yaml);
- exercises/<exercise>.md for every shipped exercise: its title, intro, params, tasks and what
  grades each (on the wire or not), its topology, setup, the lesson it practises, and how to start
  and prove it (not its hints or its solution: students read this site too);
- syntax.md from the composed model's JSON Schema;
- cli.md from the argparse parser.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import re
from pathlib import Path

import yaml
from mkdocs.structure.files import File

from vnetlab.checks.runner import check_kinds
from vnetlab.cli import build_parser
from vnetlab.compose import load_scenario, registry
from vnetlab.exercise.content import intro_text
from vnetlab.model.templates import render
from vnetlab.model.schema import scenario_schema
from vnetlab.model.typed_yaml import yaml_key
from vnetlab.paths import exercise_files, lesson_files
from vnetlab.plan.planner import make_plan
from vnetlab.plan.variables import plan_variables
from vnetlab.tools.explain import explain
from vnetlab.tools.graph import to_dot, to_svg, topology

DOCS = Path(__file__).parent
EXPECTATIONS = {
    "arp": "the ARP request and its reply",
    "icmp-echo": "the ICMP echo requests and replies of the pings",
    "ndp": "a neighbour solicitation for the other's IPv6 address (to its solicited-node multicast group) and the advertisement back",
    "icmp6-echo": "the ICMPv6 echo requests and replies of the IPv6 pings",
    "dhcp": "the client's DHCP exchange: DISCOVER, OFFER, REQUEST and ACK of its reservation (it asks again while captured)",
    "ra": "router advertisements of the bridge's prefix from its router (the client solicits them again while captured)",
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
        family = f" over IPv{spec.family}" if getattr(spec, "family", None) else ""
        return f"`{spec.source}` sends {spec.count} echo request(s) to `{spec.to}`{family}{via}; {verdict}."
    if kind == "capture":
        seen = "; ".join(EXPECTATIONS.get(e, e) for e in spec.expect)
        who = f"between `{spec.between[0]}` and `{spec.between[1]}`" if len(spec.between) == 2 else f"for `{spec.between[0]}`"
        return f"A capture on `{spec.on}` for the whole check phase must show, {who}: {seen}."
    if kind == "command":
        return f"`{spec.run}` on `{spec.node}` must give `{_flow(spec.expect)}`" + (f", retried for {spec.retry.for_} s" if spec.retry else "") + "."
    if kind == "answer":
        return f"The student's answer (`vnetlab exercise answer`), compared as `{spec.normalize}` with the expected one (never shown)."
    if kind == "wireguard":
        a, b = spec.between
        fresh = f", made during the check (vnetlab first takes `{a}`'s `{spec.tunnel}` down and up, which drops its sessions)" if spec.rekey else ""
        return f"`{a}` and `{b}` must both report a completed handshake with each other on `{spec.tunnel}` (`wg show`){fresh}."
    if kind == "pmtu":
        verdict = {"success": "every one must be answered", "failure": "none may be answered",
                   "frag-needed": "none may be answered, and a router must answer *fragmentation needed*"}[spec.expect]
        return f"`{spec.source}` sends don't-fragment pings of {spec.size + 28} bytes to `{spec.to}`: {verdict}."
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


def exercise_page(path: Path, lesson: str | None = None) -> tuple[str, str]:
    """What a student may read before starting: no hints, no solution, and not the setup either
    (an exercise that hides a fault would name it there); teachers see it in `plan --explain`."""
    scenario = load_scenario(path)
    plan = make_plan(scenario, scenario.name)
    ex = scenario.exercise
    kinds = check_kinds(plan)
    svg = to_svg(to_dot(topology(plan, management=False))).decode()
    variables = plan_variables(plan)
    params = "\n".join(f"| `{name}` | `{_flow(p) if not isinstance(p, str) else p}` | `{scenario.param_values[name]}` |" for name, p in scenario.params.items())
    tasks = []
    for k, task in enumerate(ex.tasks, 1):
        checks = "\n".join(
            f"    - {check_sentence(c)}" + (" Graded on the wire: vnetlab's own capture must see it." if c.kind in kinds and kinds[c.kind].wire is not None else "")
            for c in task.checks
        )
        tasks.append(f"{k}. **{task.name}** ({task.points} point{'s' if task.points != 1 else ''}, {len(task.hints)} hint(s)" + (f", −{task.hint_cost:g} each" if task.hints and task.hint_cost else "") + f")\n\n{textwrap.indent(render(task.text, variables).strip(), '    ')}\n\n{checks}")
    page = f"""# {ex.title}

`{scenario.name}` — {scenario.description}

{render(intro_text(scenario), variables).strip()}

{f"It practises the lesson [{lesson}](../lessons/{lesson}.md)." if lesson else ""}
A student's lab: `vnetlab exercise start {scenario.name} --student ID` (their params, lab `{scenario.name}-ID`);
how to work on it: [doing exercises](../exercises-doing.md).
The proof that it works: `vnetlab exercise test {scenario.name}` (each task fails before its solution and passes after it);
how to write one: [writing exercises](../exercises-writing.md).
How the checks below grade: [how exercises are graded](../grading.md).

{f"Time limit: {ex.time_limit} (shown, not enforced)." if ex.time_limit else ""}

## Params

{"Drawn per student from the student id; the values shown are those of student `demo`." if scenario.params else "None: every student gets the same lab."}

{"| param | kind | demo |" + chr(10) + "|---|---|---|" + chr(10) + params if scenario.params else ""}

## Tasks and what grades them

{chr(10).join(tasks)}

## Topology

![topology of {scenario.name}]({scenario.name}.svg)

## Setup

The lab is built as the scenario says, then {len(ex.setup)} setup step(s) take away what the
tasks ask for. What they do is not on this page (it could give a task away); a teacher sees
them with `vnetlab plan {scenario.name} --explain`.
"""
    return page, svg


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
        if "properties" not in definition:  # a value, not a mapping (a template of params in a number's place)
            out += [f"A string matching `{definition['pattern']}`." if "pattern" in definition else f"Of type {_type(definition)}."]
            continue
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
    exercises = ["# Exercises", "", "Each exercise is a scenario whose student does the work: `vnetlab exercise start NAME --student ID`; every page below is generated from it.", "", "| exercise | title | tasks | lesson |", "|---|---|---|---|"]
    for path in lesson_files():
        scenario = load_scenario(path)
        page, svg = lesson_page(path, teaches.get(path.stem, ""), exercise_of.get(path.stem))
        files.append(File.generated(config, f"lessons/{path.stem}.md", content=page))
        files.append(File.generated(config, f"lessons/{path.stem}.svg", content=svg))
        index.append(f"| [{path.stem}]({path.stem}.md) | {scenario.description} |")
    files.append(File.generated(config, "lessons/index.md", content="\n".join(index) + "\n"))
    for path in exercise_files():
        scenario = load_scenario(path)
        page, svg = exercise_page(path, practised.get(path.stem))
        files.append(File.generated(config, f"exercises/{path.stem}.md", content=page))
        files.append(File.generated(config, f"exercises/{path.stem}.svg", content=svg))
        lesson = practised.get(path.stem)
        exercises.append(f"| [{path.stem}]({path.stem}.md) | {scenario.exercise.title} | {len(scenario.exercise.tasks)} | " + (f"[{lesson}](../lessons/{lesson}.md)" if lesson else "") + " |")
    files.append(File.generated(config, "exercises/index.md", content="\n".join(exercises) + "\n"))
    files.append(File.generated(config, "syntax.md", content=syntax_page()))
    files.append(File.generated(config, "cli.md", content=cli_page()))
    return files
