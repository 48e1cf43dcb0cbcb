"""The bounded jinja2 sandbox every template of a scenario renders in (vnetlab.model.templates, params).

Templates come with scenarios, and a template is rendered by root while the scenario is checked,
so rendering is bounded in what it may reach and in what it may cost. jinja2's immutable sandbox
keeps it from Python's internals and from changing any value it is given; on top of that
(`BoundedEnvironment`):
- every value a template builds is measured before it is built: `*`, `**`, `+`, `%` and `~`
  are intercepted and refused beyond MAX_RENDERED characters (or items, counted through nested
  and repeated lists) or MAX_INT_BITS bits, as are the filters that take a size (center, indent,
  wordwrap, replace, format, join, batch, slice) and every filter's result;
- string and container methods are limited to ones that cannot grow a value (`'x'.ljust(n)`,
  `{}.fromkeys(…)`, `'…'.format(…)` are refused);
- all the loops of one rendering share MAX_LOOP_ITERATIONS, `range` gives at most as many, and
  everything written, template text included, counts towards MAX_RENDERED as it is written (in
  macros and filter blocks too), so nested loops neither run nor allocate for long.
A limit reached raises TooBig; the callers turn it (and a MemoryError or RecursionError that still
happens) into their own input error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
import jinja2.sandbox
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

MAX_RENDERED = 256 * 1024  # characters a rendering writes in all, and the size of any value it builds
MAX_LOOP_ITERATIONS = 10_000  # over all the loops of one rendering
MAX_INT_BITS = 4096
MAX_FORMAT_WIDTH = 1000  # a printf width or precision (`%-20s`)
_GROWING_FILTERS = {"center", "indent", "wordwrap", "replace", "format", "join", "batch", "slice"}
_SAFE_METHODS: dict[type, frozenset[str]] = {  # what a template may call on these; anything else could grow a value
    str: frozenset(
        "capitalize casefold count endswith find index isalnum isalpha isdecimal isdigit islower isnumeric isspace "
        "istitle isupper lower lstrip partition removeprefix removesuffix rfind rindex rpartition rsplit rstrip split "
        "splitlines startswith strip swapcase title upper".split()
    ),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
}
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")


class TooBig(Exception):
    """A template asked for more than a template may use."""


def _size(value: Any, limit: int = MAX_RENDERED) -> int:
    """Roughly the characters `value` would print as, counting a list repeated n times n times
    (a template cannot build cycles: the sandbox keeps values immutable). Stops once past `limit`."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, dict):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 1
    return total


def _bounded(value: Any, what: str) -> Any:
    if _size(value) > MAX_RENDERED:
        raise TooBig(f"{what} would be longer than {MAX_RENDERED} characters")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TooBig(f"{what} would be a number of more than {MAX_INT_BITS} bits")
    return value


def _check_printf(fmt: str, args: Any) -> None:
    """A printf-style format (`%` on a string, the format filter) with no width that could grow it unbounded."""
    for width, precision in _PRINTF.findall(fmt):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_FORMAT_WIDTH):
                raise TooBig(f"a format width or precision above {MAX_FORMAT_WIDTH} ({number!r})")
    if _size(fmt) + _size(args) + 64 * fmt.count("%") > MAX_RENDERED:
        raise TooBig(f"the formatted text would be longer than {MAX_RENDERED} characters")


def _check_operands(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int) and _size(seq) * max(times, 0) > MAX_RENDERED:
                raise TooBig(f"repeating a value {times} times would make it longer than {MAX_RENDERED} characters")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TooBig(f"the product would have more than {MAX_INT_BITS} bits")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and max(left.bit_length(), 1) * right > MAX_INT_BITS:
            raise TooBig(f"{left} ** {right} would have more than {MAX_INT_BITS} bits")
    elif operator == "+":
        if not (isinstance(left, (int, float)) and isinstance(right, (int, float))) and _size(left) + _size(right) > MAX_RENDERED:
            raise TooBig(f"joining the values would make one longer than {MAX_RENDERED} characters")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


def _check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before a filter that takes a size runs: what it would build."""
    def arg(position: int, key: str, default: Any) -> Any:
        return args[position] if len(args) > position else kwargs.get(key, default)

    text = value if isinstance(value, str) else ""
    if name == "center":
        width = arg(0, "width", 80)
        grows = width if isinstance(width, int) else MAX_RENDERED + 1
    elif name == "indent":
        width = arg(0, "width", 4)
        grows = (text.count("\n") + 1) * (len(width) if isinstance(width, str) else width if isinstance(width, int) else MAX_RENDERED + 1)
    elif name == "wordwrap":
        wrap = arg(2, "wrapstring", "\n")
        grows = len(text) * (1 + _size(wrap))
    elif name == "replace":
        old, new = arg(0, "old", ""), arg(1, "new", "")
        grows = (text.count(old) if old else len(text) + 1) * _size(new)
    elif name == "format":
        _check_printf(text, (args, kwargs))
        grows = 0
    elif name == "join":
        items = list(value) if isinstance(value, (list, tuple, set, frozenset, dict)) else []
        grows = _size(items) + len(items) * _size(arg(0, "d", ""))
    else:  # batch, slice: lists of (up to) n, padded with fill_with
        count = arg(0, "linecount" if name == "batch" else "slices", 1)
        grows = (count if isinstance(count, int) else MAX_RENDERED + 1) * (1 + _size(arg(1, "fill_with", None)))
    if len(text) + grows > MAX_RENDERED:
        raise TooBig(f"the {name} filter would build more than {MAX_RENDERED} characters")


def _bounded_filter(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, refused before it runs when its input (or what a sized filter would build) is too
    big, and after it runs when its result is (a lazy result is measured where it is used)."""
    passes = getattr(filter_, "jinja_pass_arg", None)  # pass_context & co.: the value comes second

    def run(*args: Any, **kwargs: Any) -> Any:
        value, rest = (args[1], args[2:]) if passes is not None else (args[0], args[1:])
        _bounded(value, f"the input of the {name} filter")
        if name in _GROWING_FILTERS:
            _check_filter(name, value, rest, kwargs)
        result = filter_(*args, **kwargs)
        return result if isinstance(result, Iterator) else _bounded(result, f"the result of the {name} filter")

    if passes is not None:
        run.jinja_pass_arg = passes  # type: ignore[attr-defined]
    return run


class _Budget:
    """What one rendering has used: characters written, loop iterations."""

    def __init__(self) -> None:
        self.written = 0
        self.iterations = 0

    def write(self, value: Any) -> Any:
        self.written += _size(value, MAX_RENDERED - self.written)
        if self.written > MAX_RENDERED:
            raise TooBig(f"the rendered text would be longer than {MAX_RENDERED} characters")
        return value

    def loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.iterations += 1
            if self.iterations > MAX_LOOP_ITERATIONS:
                raise TooBig(f"its loops would run more than {MAX_LOOP_ITERATIONS} times in all")
            yield item


class _BoundedCodeGenerator(CodeGenerator):
    """jinja2's compiler, with every loop's iterable passed through the rendering's loop budget, literal
    template text written through finalize like any value (so it is counted), and `~` bounded."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        budget = nodes.EnvironmentAttribute("loop_budget", lineno=node.lineno)
        if not (isinstance(node.iter, nodes.Call) and node.iter.node == budget):
            node.iter = nodes.Call(budget, [node.iter], [], None, None, lineno=node.lineno)
        super().visit_For(node, frame)

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        node.nodes = [nodes.Const(child.data, lineno=child.lineno) if isinstance(child, nodes.TemplateData) else child for child in node.nodes]
        super().visit_Output(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_bounded((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """One rendering's environment: jinja2's immutable sandbox with every way of growing a value bounded."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, filters: Mapping[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=self._written)
        self.budget = _Budget()
        self.globals.pop("lipsum", None)  # lorem ipsum of any length
        self.globals["range"] = self._range
        self.filters = {name: _bounded_filter(name, f) for name, f in {**self.filters, **(filters or {})}.items()}
        self.loop_budget = self.budget.loop

    @jinja2.pass_context
    def _written(self, context: Any, value: Any) -> Any:  # noqa: ARG002 — pass_context: never folded at compile time
        return self.budget.write(value)

    def _range(self, *args: int) -> range:
        rng = range(*args)
        if len(rng) > MAX_LOOP_ITERATIONS:
            raise TooBig(f"range() of {len(rng)} numbers; at most {MAX_LOOP_ITERATIONS}")
        return rng

    def join_bounded(self, values: tuple[Any, ...]) -> str:
        if sum(_size(v) for v in values) > MAX_RENDERED:
            raise TooBig(f"joining the values with ~ would make one longer than {MAX_RENDERED} characters")
        return "".join(map(str, values))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_operands(operator, left, right)
        return _bounded(super().call_binop(context, operator, left, right), f"the result of {operator}")

    def wrap_str_format(self, value: Any) -> None:
        """`'{:>999999999}'.format(…)` would build what it likes: str.format is refused (is_safe_attribute)
        like every method that could grow a value; the format filter (printf style) is bounded."""
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        allowed = next((names for kind, names in _SAFE_METHODS.items() if isinstance(obj, kind)), None)
        if allowed is not None and callable(value) and attr not in allowed:
            return False
        return super().is_safe_attribute(obj, attr, value)
