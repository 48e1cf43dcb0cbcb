"""Templates are rendered by root while a scenario is checked, and a scenario may come from anyone
(issue 23, finding 9): no template may allocate or loop without bound. Each hostile template is a
located validation problem, refused before it builds what it asks for; ordinary templates render
as before."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from vnetlab.compose import parse_scenario
from vnetlab.model import sandbox, templates
from vnetlab.model.templates import TemplateError, render
from vnetlab.model.typed_yaml import ValidationError

VARIABLES = {"server": {"ip": "10.1.1.2", "eth0": {"ip": "10.1.1.2", "mac": "02:00:00:00:00:01"}}, "nodes": {}, "bridges": {}}

HOSTILE = {
    "string repetition": "{{ ('x' * 100000000)|length }}",
    "list repetition, nested": "{{ ([[1] * 1000] * 1000)|length }}",
    "a huge power": "{{ (10 ** 10000000)|string|length }}",
    "a product of huge numbers": "{{ 2 ** 4000 * 2 ** 4000 }}",
    "doubling by ~ in a recursive macro": "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}",
    "doubling in a namespace": "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "the center filter": "{{ 'x'|center(100000000)|length }}",
    "the indent filter": "{{ ('x\\n' * 1000)|indent(100000)|length }}",
    "the replace filter": "{{ ('x' * 1000)|replace('x', 'y' * 100000)|length }}",
    "the wordwrap filter": "{{ ('x ' * 1000)|wordwrap(1, wrapstring='y' * 10000)|length }}",
    "the batch filter": "{{ [1]|batch(100000000, 'x')|list|length }}",
    "a printf width": "{{ ('%0100000000d' % 1)|length }}",
    "a printf width from the arguments": "{{ ('%*d' % (100000000, 1))|length }}",
    "the format filter": "{{ '%0100000000d'|format(1)|length }}",
    "str.format": "{{ '{:>100000000}'.format(1)|length }}",
    "str.ljust": "{{ 'x'.ljust(100000000)|length }}",
    "dict.fromkeys aliasing": "{{ {}.fromkeys(range(1000), 'x' * 200000)|string|length }}",
    "a huge range": "{{ range(100000000)|list|length }}",
    "nested loops": "{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}",
    "a range reused in nested loops": "{% set r = range(3000) %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
    "output in a loop": "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
    "output in a macro": "{% macro m() %}{% for i in range(9000) %}{{ 'x' * 100 }}{% endfor %}{% endmacro %}{{ m()|length }}",
    "lorem ipsum": "{{ lipsum(1000000)|length }}",
    "endless recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
}


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.parametrize("template", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_costly_template_is_refused_before_it_builds_what_it_asks(template: str) -> None:
    before = peak_rss_kib()
    with pytest.raises(TemplateError, match="template (too costly|not allowed|variable 'lipsum')"):
        render(template, VARIABLES)
    assert peak_rss_kib() - before < 256 * 1024  # a generous guard: each of these asks for 100 MB to gigabytes


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ server.ip }}:{{ server.eth0.mac }}", "10.1.1.2:02:00:00:00:00:01"),
        ("{% for i in range(3) %}{{ i }},{% endfor %}", "0,1,2,"),
        ("{% for x in 'ab' %}{{ loop.index }}{{ x }}{% endfor %}", "1a2b"),
        ("{{ 'a' ~ server.ip }} {{ server.ip|replace('.', '-') }} {{ '%-4s|' % 'ab' }} {{ '%03d'|format(7) }}", "a10.1.1.2 10-1-1-2 ab  | 007"),
        ("{{ ['a', 'b']|join(',') }} {{ 'x' * 3 }} {{ 2 ** 10 }} {{ 'A,B'.lower().split(',')|join('+') }}", "a,b xxx 1024 a+b"),
        ("{% macro hi(n) %}hi {{ n }}{% endmacro %}{{ hi('you') }}", "hi you"),
        ("{% filter upper %}{% for i in range(3) %}ab{% endfor %}{% endfilter %}", "ABABAB"),
        ("{% for x in [1, [2, 3]] recursive %}{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}{% endif %}{% endfor %}", "123"),
        ("{% for i in range(2000) %}{{ 'x' * 100 }}{% endfor %}", "x" * 200_000),
    ],
)
def test_ordinary_templates_render_as_before(template: str, expected: str) -> None:
    assert render(template, VARIABLES) == expected


def scenario(tmp_path: Path, command: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(
        "name: costly\nbridges: [{name: br0, subnet: 10.1.1.0/24}]\nvms:\n  - name: server\n    nics: [{bridge: br0, address: 10.1.1.2/24}]\n"
        f"    exec:\n      - {json.dumps(command)}\n"
    )
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        parse_scenario(path.read_text(), str(path))
    return [str(p) for p in refused.value.problems]


def test_a_costly_template_in_a_scenario_is_a_located_problem(tmp_path: Path) -> None:
    path = scenario(tmp_path, "echo {{ ('x' * 100000000)|length }}")
    assert problems(path) == [f"{path}:7: vms[0].exec[0]: template too costly: repeating a value 100000000 times would make it longer than 262144 characters"]


def test_recursion_and_memory_errors_are_located_problems_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = scenario(tmp_path, "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}")
    assert problems(path) == [f"{path}:7: vms[0].exec[0]: template too costly: it nests or recurses too deeply"]

    class Exhausted(sandbox.BoundedEnvironment):
        def from_string(self, *args, **kwargs):  # what a MemoryError anywhere in jinja2 looks like to the caller
            raise MemoryError

    monkeypatch.setattr(templates, "environment", Exhausted)
    path = scenario(tmp_path, "echo {{ server.ip }}")
    assert problems(path) == [f"{path}:7: vms[0].exec[0]: template too costly: it ran out of memory"]
