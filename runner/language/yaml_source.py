"""Read YAML safely into plain Python data, remembering where every value came from.

Only the YAML core types are accepted (mappings, sequences, strings, numbers,
booleans, null). Tags such as ``!!python/object`` are refused with a located
error instead of being constructed: nothing in a workflow can import code.

Whatever the bytes, reading ends in data or a located WorkflowError, in bounded
time and memory: the text is at most MAX_DOCUMENT_BYTES, nested at most
MAX_DEPTH levels, holds at most MAX_VALUES values (an alias counts as every
value it repeats, so an "alias bomb" is refused after that many, not built),
strings are at most MAX_STRING characters and integers fit in 64 bits.
PyYAML's own composer is recursive (about 490 levels of nesting exhaust
Python's default recursion limit); the composer here is a loop over PyYAML's
parser events that checks each limit as the events arrive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.reader import Reader, ReaderError

from .errors import Location, Problem, WorkflowError

MAX_DOCUMENT_BYTES = 1 << 20  # 1 MiB: a workflow is a few kilobytes; 1000 nodes fit with room to spare
MAX_DEPTH = 64  # levels of nested mappings and lists (a workflow needs about 6)
MAX_VALUES = 50_000  # keys, items and scalars together, each alias counted as the values it repeats (1000 nodes need about 20,000)
MAX_STRING = 65_536  # characters in one string: far above what a text encoder reads of a prompt (77 tokens)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # no field takes more (seeds stop at 2**63-1)
_INT_DIGITS_MAX = 64  # significant digits: more than this cannot fit in 64 bits in any base (and int() is not asked)

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null")}
_MERGE = _CORE + "merge"
_UNUSABLE = re.compile("[\x00\ud800-\udfff]")  # what an escape can write but no text may hold: NUL, lone surrogates
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what PyYAML counts as a line break


class SourceMap:
    """Document path -> Location of that entry (its key for mapping entries)."""

    def __init__(self, source: str):
        self.source = source
        self.marks: dict[tuple, Location] = {}

    def add(self, path: tuple, mark: yaml.Mark) -> None:
        self.marks[path] = Location(self.source, mark.line + 1, mark.column + 1)

    def locate(self, path: tuple) -> Location:
        """The closest recorded location at or above `path`."""
        path = tuple(path)
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, Location(self.source))


def _mark_location(source: str, mark) -> Location:
    if mark is None:
        return Location(source)
    return Location(source, mark.line + 1, mark.column + 1)


def _position_location(source: str, text: str, position: int) -> Location:
    """file:line:col of character `position` of `text`, counting lines the way PyYAML does."""
    line, start = 1, 0
    for brk in _LINE_BREAK.finditer(text, 0, position):
        line, start = line + 1, brk.end()
    return Location(source, line, position - start + 1)


def read_yaml_text(path: FsPath) -> str:
    """The text of a workflow file: at most MAX_DOCUMENT_BYTES of UTF-8 (refused before parsing), newlines as \\n."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise WorkflowError([Problem(Location(source), (), "file not found", "check the path")]) from None
    except OSError as exc:
        raise WorkflowError([Problem(Location(source), (), f"cannot read file: {exc}")]) from None
    if len(data) > MAX_DOCUMENT_BYTES:
        try:
            size = FsPath(path).stat().st_size
        except OSError:
            size = 0
        raise WorkflowError([_too_big(Location(source), "file", size if size > MAX_DOCUMENT_BYTES else None)])  # None: a device, a pipe
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        where = Location(source, data.count(b"\n", 0, exc.start) + 1, column)
        raise WorkflowError([Problem(where, (), f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded",
                                     "save the workflow as UTF-8 text (is this the right file?)")]) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as Path.read_text does


def _too_big(where: Location, what: str, size: int | None) -> Problem:
    limit = f"the limit of {MAX_DOCUMENT_BYTES:,} bytes (1 MiB) for a workflow"
    return Problem(where, (), f"the {what} is {size:,} bytes, more than {limit}" if size else f"the {what} is longer than {limit}",
                   "a workflow is a few kilobytes of YAML: check that this is the right file, and keep long data in files it names")


def load_yaml(text: str, source: str, *, outer_depth: int = 0) -> tuple[Any, SourceMap]:
    """Parse YAML text with the safe loader; return (data, source map) or raise WorkflowError.

    `outer_depth` is how many levels the value will sit under once placed in a
    document (a --set value at params.prompt sits under 2): they count towards MAX_DEPTH.
    """
    smap = SourceMap(source)
    if len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8", errors="surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise WorkflowError([_too_big(Location(source), "text", len(text.encode("utf-8", errors="surrogatepass")))])
    bad = Reader.NON_PRINTABLE.search(text)
    if bad:
        raise WorkflowError([_bad_character(source, text, bad.start())])
    loader = _fast_compose(text, source, outer_depth)
    if loader is not None:
        loader, root = loader
    try:
        try:
            if loader is None:
                loader = _Loader(text)
                loader.source, loader.outer_depth = source, outer_depth
                root = _Composer(loader, source, outer_depth).compose()
        except ReaderError as exc:  # the check above finds these first; kept so none can escape
            raise WorkflowError([_bad_character(source, text, exc.position)]) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = f"YAML syntax error: {exc.problem or exc}"
            hint = "check indentation, colons and quotes on that line"
            if "'\\t'" in str(exc.problem or ""):  # PyYAML: found character '\t' that cannot start any token
                message = "YAML syntax error: a tab; YAML indents with spaces only (a tab is allowed inside text)"
                hint = "replace the tab with spaces (2 per level is usual); set your editor to indent YAML with spaces"
            if exc.context:
                context_mark = exc.context_mark
                started = ""
                if context_mark is not None and mark is not None and context_mark.line != mark.line:
                    started = f" that starts at line {context_mark.line + 1}, column {context_mark.column + 1}"
                    hint = f"close the brackets or quotes opened at line {context_mark.line + 1}, or fix the indentation"
                message += f" ({exc.context}{started})"
            raise WorkflowError(
                [Problem(_mark_location(source, mark), (), message, hint)]
            ) from None
        except yaml.YAMLError as exc:
            raise WorkflowError([Problem(Location(source), (), f"YAML error: {exc}")]) from None
        except ValueError as exc:  # PyYAML's chr() of an escape beyond Unicode ("\U00110000")
            mark = loader.get_mark() if loader is not None else None
            raise WorkflowError([Problem(_mark_location(source, mark), (), f"YAML error: an escape names no character "
                                                                          f"({exc})", "Unicode ends at \\U0010FFFF: "
                                                                                      "fix or remove the escape")]) from None
        if root is None:
            return None, smap
        problems: list[Problem] = []
        data = _to_data(root, (), loader, smap, problems)
        if problems:
            raise WorkflowError(problems)
        return data, smap
    finally:
        if loader is not None:
            loader.dispose()


def _bad_character(source: str, text: str, position: int) -> Problem:
    position = min(max(position, 0), len(text) - 1)
    code = ord(text[position])
    where = _position_location(source, text, position)
    if code == 0:
        return Problem(where, (), "a NUL byte (U+0000) is not allowed in YAML",
                       "is this a text file? delete it; inside double quotes \\0 writes one")
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return Problem(where, (), f"control character U+{code:04X} is not allowed in YAML (tabs and line breaks are fine)",
                       f"delete it; inside double quotes \\x{code:02x} writes one")
    return Problem(where, (), f"character U+{code:04X} is not allowed in YAML (a non-character or an unpaired surrogate)",
                   "delete it, or save the file as UTF-8 text")


def _fast_compose(text: str, source: str, outer_depth: int):
    """(loader, root) composed by libyaml's C parser (PyYAML's CSafeLoader: the same events, resolver and
    constructor, about ten times faster: a 10,000-node file took 1.1 s in the Python scanner), or None where it
    is missing or the text is not YAML it accepts: then the Python loader parses it again and words the error as
    before. The composer's limits (depth, values, aliases, text) apply to its events alike."""
    if _CLoader is None:
        return None
    loader = _CLoader(str(text))  # libyaml takes an exact str (a subclass is refused)
    loader.source, loader.outer_depth = source, outer_depth
    try:
        return loader, _Composer(loader, source, outer_depth).compose()
    except (yaml.YAMLError, ValueError):  # a syntax error, an escape beyond Unicode, an unencodable character
        loader.dispose()
        return None
    except BaseException:
        loader.dispose()
        raise


_CLoader = getattr(yaml, "CSafeLoader", None)
_CDumper = getattr(yaml, "CSafeDumper", None)


def dump_yaml(data: Any, **options: Any) -> str:
    """`yaml.safe_dump(data, **options)`, written by libyaml's C emitter where PyYAML has it: the same text for
    everything runner writes (workflows, manifests' values; tested), in a fraction of the Python emitter's time,
    which a cached run spends on every resolved workflow and report card (bench/start_time.py)."""
    return yaml.dump_all([data], Dumper=_CDumper or yaml.SafeDumper, **options)


class _Loader(yaml.SafeLoader):
    """The safe loader whose scanner refuses a bracket past MAX_DEPTH levels ([[[...).

    The scanner reads up to 1024 characters ahead of the parser (a flow entry may
    turn out to be a key), and each step looks at every open flow level: a run of
    brackets cost about 1024 x 1024 steps (half a second here, 2 s traced) before
    the composer could refuse the 65th. Its count
    (block indentation levels, flow levels, the --set path's) is at most the true
    depth, and the same as the composer's in the usual layouts.
    """

    source = ""
    outer_depth = 0

    def fetch_flow_collection_start(self, TokenClass):
        if self.outer_depth + len(self.indents) + self.flow_level + 1 > MAX_DEPTH:
            raise WorkflowError([Problem(_mark_location(self.source, self.get_mark()), (), _TOO_DEEP, _TOO_DEEP_HINT)])
        super().fetch_flow_collection_start(TokenClass)


@dataclass
class _Open:
    """A mapping or sequence whose end event has not arrived yet."""

    node: yaml.Node
    anchor: str | None
    size: int = 1  # values it holds so far, itself included, aliases expanded
    height: int = 1  # levels of collections from it down, aliases expanded
    key: yaml.Node | None = None  # a mapping's key waiting for its value
    has_key: bool = False


@dataclass
class _Composer:
    """PyYAML's Composer as a loop over parser events, with the limits of this module checked on each event.

    Same nodes and the same ComposerErrors as PyYAML's; merge keys (<<) are
    flattened as each mapping ends (YAML's rule: the mapping's own keys win,
    then earlier merged mappings), so nothing later recurses into them.
    """

    loader: yaml.SafeLoader
    source: str
    outer_depth: int = 0
    total: int = 0
    anchors: dict[str, yaml.Node] = field(default_factory=dict)
    expanded: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(anchored node) -> (size, height)
    stack: list[_Open] = field(default_factory=list)

    def compose(self) -> yaml.Node | None:
        loader = self.loader
        loader.get_event()  # stream start
        root = None
        if not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # document start
            root = self._compose_node()
            loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            raise ComposerError("expected a single document in the stream", root.start_mark if root is not None else None,
                                "but found another document", event.start_mark)
        loader.get_event()  # stream end
        return root

    def _compose_node(self) -> yaml.Node:
        loader = self.loader
        while True:
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                node = self.anchors.get(event.anchor)
                if node is None:
                    raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
                if any(entry.anchor == event.anchor for entry in self.stack):
                    raise self._limit(event.start_mark, f"alias '*{event.anchor}' is inside the value it names "
                                      f"(anchored '&{event.anchor}' at line {node.start_mark.line + 1}): a value cannot contain itself",
                                      "copy the values instead, or anchor a part that does not contain the alias")
                size, height = self.expanded[id(node)]
                self._check_depth(height, event.start_mark)
                self._count(size, event.start_mark)
                done = self._attach(node, size, height)
            elif isinstance(event, yaml.ScalarEvent):
                self._check_anchor(event)
                if len(event.value) > MAX_STRING:
                    raise self._limit(event.start_mark, f"text of {len(event.value):,} characters is longer than the limit of "
                                      f"{MAX_STRING:,}", "shorten it: a text encoder reads the first 77 tokens of a prompt "
                                      "(a few hundred characters)")
                unusable = _UNUSABLE.search(event.value)
                if unusable:  # only an escape in double quotes writes these; no file name, prompt or hash can hold them
                    code = ord(unusable.group())
                    raise self._limit(event.start_mark, "text holds a NUL character (\\0)" if code == 0 else
                                      f"text holds U+{code:04X}, half of a surrogate pair: not a character on its own",
                                      "remove that escape" + ("" if code == 0 else ", or write the character itself"))
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
                self._count(1, event.start_mark)
                if event.anchor is not None:
                    self.anchors[event.anchor] = node
                    self.expanded[id(node)] = (1, 0)
                done = self._attach(node, 1, 0)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                self._check_anchor(event)
                self._check_depth(1, event.start_mark)
                mapping = isinstance(event, yaml.MappingStartEvent)
                kind = yaml.MappingNode if mapping else yaml.SequenceNode
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(kind, None, event.implicit)
                node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
                self._count(1, event.start_mark)
                if event.anchor is not None:
                    self.anchors[event.anchor] = node
                self.stack.append(_Open(node, event.anchor))
                continue
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                entry = self.stack.pop()
                entry.node.end_mark = event.end_mark
                if isinstance(entry.node, yaml.MappingNode):
                    self._flatten(entry.node)
                if entry.anchor is not None:
                    self.expanded[id(entry.node)] = (entry.size, entry.height)
                done = self._attach(entry.node, entry.size, entry.height)
            else:  # the parser emits nothing else inside a document
                raise ComposerError(None, None, f"unexpected {type(event).__name__}", event.start_mark)
            if done is not None:
                return done

    def _attach(self, node: yaml.Node, size: int, height: int) -> yaml.Node | None:
        """Add a finished node to the open collection; return it when it is the document's root."""
        if not self.stack:
            return node
        parent = self.stack[-1]
        parent.size += size
        parent.height = max(parent.height, height + 1)
        if isinstance(parent.node, yaml.SequenceNode):
            parent.node.value.append(node)
        elif not parent.has_key:
            parent.key, parent.has_key = node, True
        else:
            parent.node.value.append((parent.key, node))
            parent.key, parent.has_key = None, False
        return None

    def _check_anchor(self, event) -> None:
        if event.anchor is not None and event.anchor in self.anchors:
            raise ComposerError(f"found duplicate anchor {event.anchor!r}; first occurrence", self.anchors[event.anchor].start_mark,
                                "second occurrence", event.start_mark)

    def _check_depth(self, height: int, mark) -> None:
        if self.outer_depth + len(self.stack) + height > MAX_DEPTH:
            raise self._limit(mark, _TOO_DEEP, _TOO_DEEP_HINT)

    def _count(self, size: int, mark) -> None:
        self.total += size
        if self.total > MAX_VALUES:
            raise self._limit(mark, f"more than {MAX_VALUES:,} values (keys, items and scalars, each alias counted as the values "
                              "it repeats)", "a workflow holds a few hundred values: check for aliases that repeat aliases "
                              "(an alias bomb) or data that belongs in a file")

    def _limit(self, mark, message: str, hint: str) -> WorkflowError:
        return WorkflowError([Problem(_mark_location(self.source, mark), (), message, hint)])

    def _flatten(self, node: yaml.MappingNode) -> None:
        """Replace merge keys (<<: *base, <<: [*a, *b]) by the pairs they merge; the merged mappings are flattened already."""
        if not any(key.tag == _MERGE for key, _value in node.value):
            return
        own, merged = [], []
        for key, value in node.value:
            if key.tag != _MERGE:
                own.append((key, value))
                continue
            sources = [value] if isinstance(value, yaml.MappingNode) else value.value if isinstance(value, yaml.SequenceNode) else [value]
            for merged_node in sources:
                if not isinstance(merged_node, yaml.MappingNode):
                    raise self._limit(merged_node.start_mark, f"a merge key (<<) takes a mapping or a list of mappings, "
                                      f"not {_kind(merged_node)}", "write '<<: *NAME' where '&NAME' anchors a mapping, "
                                      "or remove the '<<' entry")
                merged.extend(merged_node.value)
        seen = {key.value for key, _value in own if isinstance(key, yaml.ScalarNode)}
        kept = []
        for key, value in merged:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    continue
                seen.add(key.value)
            kept.append((key, value))
        node.value = kept + own


_TOO_DEEP = f"values nested more than {MAX_DEPTH} levels deep (mappings and lists inside each other, aliases expanded)"
_TOO_DEEP_HINT = "flatten the structure: a workflow needs a few levels (nodes, a node, a list of ControlNets, ...)"


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    return f"the value {text!r}"


def _to_data(node, path: tuple, loader: yaml.SafeLoader, smap: SourceMap, problems: list[Problem]) -> Any:
    """Plain data from a composed node. Its depth is at most MAX_DEPTH (the composer saw to it), so recursion is bounded."""
    if path not in smap.marks:
        smap.add(path, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        if node.tag != _CORE + "map":
            problems.append(_bad_tag(node, path, smap))
            return None
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(_mark_location(smap.source, key_node.start_mark), path, "mapping keys must be plain text"))
                continue
            key = loader.construct_scalar(key_node)
            child = path + (key,)
            if key in result:
                problems.append(
                    Problem(_mark_location(smap.source, key_node.start_mark), child, f"duplicate key '{key}'", "keep only one of them")
                )
                continue
            smap.add(child, key_node.start_mark)
            result[key] = _to_data(value_node, child, loader, smap, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _CORE + "seq":
            problems.append(_bad_tag(node, path, smap))
            return None
        return [_to_data(item, path + (i,), loader, smap, problems) for i, item in enumerate(node.value)]
    # scalars
    if node.tag in _SCALAR_TAGS:
        return _scalar(node, path, loader, smap, problems)
    if node.tag == _CORE + "timestamp":
        return node.value  # keep dates as the text the user wrote
    problems.append(_bad_tag(node, path, smap))
    return None


def _scalar(node: yaml.ScalarNode, path: tuple, loader: yaml.SafeLoader, smap: SourceMap, problems: list[Problem]) -> Any:
    if node.tag == _CORE + "int" and _significant_digits(node.value) > _INT_DIGITS_MAX:
        problems.append(_int_range(_mark_location(smap.source, node.start_mark), path, node.value))
        return None
    try:
        value = loader.construct_object(node, deep=True)
    except (ValueError, KeyError, TypeError):  # text that is not of its tag's type: !!int abc, !!bool maybe, 0b_
        problems.append(Problem(_mark_location(smap.source, node.start_mark), path,
                                f"{_kind(node)} is not a valid {node.tag.replace(_CORE, '!!')}",
                                "remove the tag, or write a value of that type"))
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        problems.append(_int_range(_mark_location(smap.source, node.start_mark), path, node.value))
        return None
    return value


def _significant_digits(text: str) -> int:
    """Digits of an integer's text after its sign, base prefix and leading zeros (sexagesimal colons count as digits)."""
    text = text.replace("_", "").lstrip("+-")
    if text[:2].lower() in ("0b", "0x", "0o"):
        text = text[2:]
    return len(text.lstrip("0"))


def _int_range(where: Location, path: tuple, text: str) -> Problem:
    shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text):,} characters)"
    return Problem(where, path, f"integer {shown} is out of range: integers in a workflow fit in 64 bits "
                                f"({INT_MIN} to {INT_MAX})", "use a smaller number, or quote it to make it text")


def _bad_tag(node, path: tuple, smap: SourceMap) -> Problem:
    return Problem(
        _mark_location(smap.source, node.start_mark),
        path,
        f"YAML tag '{node.tag}' is not allowed: workflows hold plain data only (no Python objects, no code)",
        "remove the tag and write the value as plain text, a number, a list or a mapping",
    )


def load_yaml_file(path: FsPath) -> tuple[Any, SourceMap]:
    return load_yaml(read_yaml_text(path), str(path))
