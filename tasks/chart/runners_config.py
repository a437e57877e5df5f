"""``runners.config`` is a Go template that renders to TOML: set our ``[runners.cache]`` in it and touch nothing else.

Charts render ``runners.config`` with helm's ``tpl`` (``templates/configmap.yaml``, key ``config.template.toml``:
``tpl (toYaml .Values.runners.config) $`` in 0.29–0.52, ``tpl .Values.runners.config $ | toYaml`` from 0.58; plain
``toYaml`` in 0.23–0.28), and real configs carry actions: the chart's default has ``namespace =
"{{.Release.Namespace}}"``, DoD-Platform-One's copies (0.41 … 0.86) ``image = "{{ printf "%s/%s:%s" … }}"`` —
quotes of the action inside a TOML string — and teams add ``{{- if … }}`` blocks and ``{{ … | quote }}`` bare values.

So every action is *shielded* before parsing: replaced by a placeholder that is valid TOML where it stands — a word
inside a string or a comment, a quoted word as a bare value, a bare key as a key or in a table header, and a
comment for a line holding a control action (``if``/``else``/``end``/``range``/``with``/``$x :=``…) or nothing but
actions. A line that still does not parse (``timeout = {{ .x }}s``, keys repeated in ``if``/``else`` branches) is
set aside as a comment too. tomlkit then reads the structure, only the cache section's lines are rewritten, and the
placeholders are put back: every byte outside the cache section comes back as it was. The merge refuses only when
the cache section itself sits inside a conditional, or holds a line it had to set aside, and names the line.
"""

from __future__ import annotations

import re
import secrets
import tomllib
from dataclasses import dataclass, field
from typing import Any

import tomlkit
from tomlkit.items import AoT

from runner_cache.errors import ConfigError

CACHE_KEYS = ("Type", "Path", "Shared")  # ours in [runners.cache] (cache/cacheconfig/cacheconfig.go@v18.11.4)
S3_KEYS = ("ServerAddress", "BucketName", "BucketLocation", "Insecure", "PathStyle")  # ours in [runners.cache.s3]
CREDENTIAL_KEYS = ("AccessKey", "SecretKey", "SessionToken")
CACHE = ("runners", "cache")

# Actions that print nothing (text/template/parse/lex.go keywords, comments, variable declarations).
_OPENS = {"if", "range", "with", "define", "block"}
_CONTROL = _OPENS | {"else", "end", "break", "continue"}
_VARIABLE = re.compile(r"^\$[A-Za-z0-9_]*\s*:?=(?!=)")
_BARE, _BASIC, _LITERAL, _ML_BASIC, _ML_LITERAL, _COMMENT = range(6)
_ENDS_LINE = (_BASIC, _LITERAL, _COMMENT)


@dataclass
class _Action:
    text: str
    line: int  # 1-based line of the original text where the action starts
    control: bool  # prints nothing (if/else/end/range/with/define/block/comment/$x := …)
    depth_change: int
    state: int  # TOML's lexical state where it stands
    value: bool  # bare, right of `=` or inside a multi-line value


@dataclass
class _Line:
    """One line of the text: text pieces and actions (an action spanning lines belongs to the line it starts on)."""

    number: int
    pieces: list[str | _Action] = field(default_factory=list)
    state_before: int = _BARE
    nest_before: int = 0
    open_blocks: tuple[int, ...] = ()  # lines of the {{ if/range/with }} blocks open where the line starts
    set_aside: bool = False

    @property
    def actions(self) -> list[_Action]:
        return [piece for piece in self.pieces if isinstance(piece, _Action)]

    @property
    def text(self) -> str:
        return "".join(piece if isinstance(piece, str) else piece.text for piece in self.pieces)

    @property
    def indent(self) -> str:
        text = self.text
        return text[: len(text) - len(text.lstrip(" \t"))]

    @property
    def bare_text(self) -> str:
        """The line's own text, without its actions."""
        return "".join(piece for piece in self.pieces if isinstance(piece, str))


def _action_end(text: str, start: int) -> int:
    """Index just past the ``}}`` that closes the action starting at ``start``; strings inside may hold ``}}``."""
    index = start + 2
    inner = text[index:].removeprefix("-").lstrip()
    if inner.startswith("/*"):
        close = text.find("*/", index)
        end = text.find("}}", close + 2) if close >= 0 else -1
    else:
        end = -1
        while index < len(text):
            char = text[index]
            if text.startswith("}}", index):
                end = index
                break
            if char in "\"'`":
                index += 1
                while index < len(text) and text[index] != char:
                    index += 2 if char != "`" and text[index] == "\\" else 1
            index += 1
    if end < 0:
        raise ConfigError(
            f"runners.config: the template action at line {text.count(chr(10), 0, start) + 1} is never closed with }}}}"
        )
    return end + 2


def _classify(action: str) -> tuple[bool, int]:
    """(prints nothing, block depth change) of one action."""
    inner = action[2:-2].strip().removeprefix("-").removesuffix("-").strip()
    if inner.startswith("/*"):
        return True, 0
    word = re.split(r"[\s(]", inner, maxsplit=1)[0]
    if word in _CONTROL:
        return True, 1 if word in _OPENS else -1 if word == "end" else 0
    return bool(_VARIABLE.match(inner)), 0


def _scan(segment: str, state: int, nest: int, equals: bool) -> tuple[int, int, bool]:
    """TOML's lexical state after ``segment`` (no newline in it): strings, comments, brackets of values."""
    index = 0
    while index < len(segment):
        char = segment[index]
        step = 1
        if state == _COMMENT:
            break
        if state in (_BASIC, _ML_BASIC):
            if char == "\\":
                step = 2
            elif state == _BASIC and char == '"':
                state = _BARE
            elif segment.startswith('"""', index):
                state, step = _BARE, 3
        elif state == _LITERAL:
            state = _BARE if char == "'" else state
        elif state == _ML_LITERAL:
            if segment.startswith("'''", index):
                state, step = _BARE, 3
        elif char == "#":
            state = _COMMENT
        elif char in "\"'":
            triple = segment.startswith(char * 3, index)
            state = (_ML_BASIC if triple else _BASIC) if char == '"' else (_ML_LITERAL if triple else _LITERAL)
            step = 3 if triple else 1
        elif char == "=":
            equals = True
        elif char in "[{" and equals:
            nest += 1
        elif char in "]}" and nest:
            nest -= 1
        index += step
    return state, nest, equals


def _lex(text: str) -> list[_Line]:
    """``text`` as lines of text pieces and actions, with TOML's lexical state and the open blocks at each line."""
    lines = [_Line(number=1)]
    state, nest, equals, blocks = _BARE, 0, False, ()
    number, position = 1, 0
    while True:
        start = text.find("{{", position)
        chunk = text[position:] if start < 0 else text[position:start]
        segments = chunk.split("\n")
        for index, segment in enumerate(segments):
            if index:
                lines[-1].pieces.append("\n")
                number += 1
                state = _BARE if state in _ENDS_LINE else state
                equals = nest > 0
                lines.append(_Line(number=number, state_before=state, nest_before=nest, open_blocks=blocks))
            if segment:
                lines[-1].pieces.append(segment)
                state, nest, equals = _scan(segment, state, nest, equals)
        if start < 0:
            break
        end = _action_end(text, start)
        raw = text[start:end]
        control, change = _classify(raw)
        lines[-1].pieces.append(_Action(raw, number, control, change, state, equals))
        if change > 0:
            blocks = (*blocks, number)
        elif change < 0:
            blocks = blocks[:-1]
        number += raw.count("\n")
        position = end
    return [_merge_text(line) for line in lines]


def _merge_text(line: _Line) -> _Line:
    merged: list[str | _Action] = []
    for piece in line.pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    line.pieces = merged
    return line


def _set_aside_first(line: _Line) -> bool:
    """A line that only makes sense rendered: a control action on it, or nothing but actions (of bare output)."""
    if any(action.control for action in line.actions):
        return True
    bare = [action for action in line.actions if action.state == _BARE]
    return bool(bare) and not line.bare_text.strip()


class Shielded:
    """``text`` with its actions replaced by placeholders that are valid TOML where they stand."""

    def __init__(self, text: str) -> None:
        self.lines = _lex(text)
        self.prefix = "rctpl" + secrets.token_hex(4)
        while self.prefix in text:
            self.prefix = "rctpl" + secrets.token_hex(4)
        for line in self.lines:
            line.set_aside = _set_aside_first(line)
        self.document = self._parse()

    def _parse(self) -> tomlkit.TOMLDocument:
        """Parse, setting aside each line that does not parse until the rest does."""
        for _ in range(len(self.lines) + 1):
            self.replacements: dict[str, str] = {}
            self.by_token: dict[str, str] = {}
            self.shielded = [self._shield(line) for line in self.lines]
            text = "".join(self.shielded)
            try:
                tomllib.loads(text)  # names the line of every error, duplicates included; tomlkit does not
            except tomllib.TOMLDecodeError as error:
                where = re.search(r"at line (\d+)", str(error))
                failing = self.lines[min(int(where[1]) if where else len(self.lines), len(self.lines)) - 1]
                if failing.set_aside or not (failing.actions or failing.open_blocks):
                    raise ConfigError(
                        f"runners.config is not TOML at line {failing.number}, even with its template actions set "
                        "aside: fix that line"
                    ) from None
                failing.set_aside = True
                continue
            return tomlkit.parse(text)
        raise AssertionError("unreachable: every line was set aside")

    def _token(self, original: str, form: str = "{}") -> str:
        token = f"{self.prefix}{len(self.replacements)}x"
        placeholder = form.format(token)
        self.replacements[placeholder] = original
        self.by_token[token] = original
        return placeholder

    def _shield(self, line: _Line) -> str:
        text = line.text
        if line.set_aside:
            body = text.rstrip("\n")[len(line.indent) :]
            newline = "\n" if text.endswith("\n") else ""
            return f"{line.indent}{self._token(body, '#{}')}{newline}" if body else text
        out = []
        for piece in line.pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif piece.state != _BARE:
                out.append(self._token(piece.text))
            elif piece.value:
                out.append(self._token(piece.text, '"{}"'))
            else:
                out.append(self._token(piece.text))
        return "".join(out)

    def restore(self, text: str) -> str:
        """``text`` (made of shielded lines) with every placeholder replaced by its action or line."""
        for placeholder, original in self.replacements.items():
            text = text.replace(placeholder, original)
        return text


@dataclass(frozen=True)
class _Header:
    index: int  # line index
    path: tuple[str, ...]
    array: bool


def _headers(shielded: Shielded) -> list[_Header]:
    """Table headers, by line: only where a line starts outside any string or multi-line value."""
    found = []
    for index, (line, text) in enumerate(zip(shielded.lines, shielded.shielded, strict=True)):
        stripped = text.strip()
        if line.set_aside or line.state_before != _BARE or line.nest_before or not stripped.startswith("["):
            continue
        try:
            parsed = tomllib.loads(stripped)
        except tomllib.TOMLDecodeError:
            continue
        path: list[str] = []
        node: Any = parsed
        while isinstance(node, dict) and len(node) == 1:
            key, node = next(iter(node.items()))
            path.append(key)
            if isinstance(node, list):
                node = node[0] if node else {}
        found.append(_Header(index, tuple(path), stripped.startswith("[[")))
    return found


def _value(value: str | bool) -> str:
    return tomlkit.item(value).as_string()


def _open_block_line(line: _Line) -> int | None:
    return line.open_blocks[-1] if line.open_blocks else None


@dataclass
class CacheMerge:
    """The merged text and what changed, in words."""

    text: str
    notes: list[str]


def _first_key_indent(shielded: Shielded, start: int, stop: int, default: str) -> str:
    for index in range(start, stop):
        text = shielded.shielded[index].strip()
        if text and not text.startswith("#") and not text.startswith("["):
            return shielded.lines[index].indent
    return default


def _cache_region(shielded: Shielded, headers: list[_Header]) -> tuple[int, int] | None:
    """First and last line index of the cache section (its subtables included), or None."""
    header = next((h for h in headers if h.path[:2] == CACHE), None)  # [runners.cache.s3] alone implies the table
    if header is None:
        return None
    after = next((h.index for h in headers if h.index > header.index and h.path[:2] != CACHE), len(shielded.lines))
    return header.index, max(
        i for i in range(header.index, after) if i == header.index or _section_content(shielded, i)
    )


def _section_content(shielded: Shielded, index: int) -> bool:
    """Whether line ``index`` belongs to the section above it: not blank, not a comment, not a line of only
    control actions (a ``{{- if }}`` before the next section belongs to that section)."""
    line, text = shielded.lines[index], shielded.shielded[index].strip()
    if line.set_aside:
        return not (all(action.control for action in line.actions) and not line.bare_text.strip())
    return bool(text) and not text.startswith("#")


def _check_ours(shielded: Shielded, first: int, last: int) -> None:
    """Refuse when the cache section's lines are in, or hold, something only the template decides."""
    header = shielded.lines[first]
    opened = _open_block_line(header)
    if opened is not None:
        raise ConfigError(
            f"runners.config: [runners.cache] (line {header.number}) is inside the template block opened at line "
            f"{opened}: runner-cache cannot tell whether the runner gets it. Move the cache section out of the block"
        )
    for line in shielded.lines[first : last + 1]:
        if line.set_aside:
            what = (
                "a template conditional or loop"
                if any(a.control for a in line.actions)
                else "a template action runner-cache cannot see through"
            )
            raise ConfigError(
                f"runners.config: line {line.number} inside [runners.cache] holds {what}: runner-cache replaces that "
                "section and cannot keep it. Move it out of [runners.cache]"
            )


def merge_cache_section(config: str, intended: dict[str, str | bool]) -> CacheMerge:
    """``config`` with ``[runners.cache]`` and ``[runners.cache.s3]`` set to ``intended``; nothing else changes.

    In ``[runners.cache]`` our keys (Type, Path, Shared) are set and the team's other keys
    (``MaxUploadedArchiveSize``…) and comments kept; ``[runners.cache.s3]`` is ours entirely; a ``gcs`` or
    ``azure`` subtable (a cache of another type) is removed. Each removal is a note (key names only).

    Raises:
        ConfigError: the cache section is inside a conditional or holds a line only the template decides, the
            text is not TOML even with its actions set aside, or it has other than one ``[[runners]]`` table.
    """
    shielded = Shielded(config)
    runners = shielded.document.get("runners")
    if runners is not None and (not isinstance(runners, AoT) or len(runners) != 1):
        raise ConfigError(
            "runners.config must hold exactly one [[runners]] table (the runner's register template takes one)"
        )
    headers = _headers(shielded)
    if runners is not None and "cache" in runners[0] and not any(h.path[:2] == CACHE for h in headers):
        raise ConfigError(
            "runners.config sets the cache with dotted keys or an inline table: write it as a [runners.cache] table"
        )
    lines = list(shielded.shielded)
    notes: list[str] = []
    region = _cache_region(shielded, headers)
    if region is not None:
        start, last = region
        _check_ours(shielded, start, last)
        section, notes = _replace_section(shielded, headers, start, last, intended)
        lines[start : last + 1] = section
    else:
        lines, insert_notes = _insert_section(shielded, headers, lines, intended)
        notes += insert_notes
    text = shielded.restore("".join(lines))
    _verify(text, intended)
    return CacheMerge(text, notes)


def _replace_section(
    shielded: Shielded, headers: list[_Header], start: int, last: int, intended: dict[str, str | bool]
) -> tuple[list[str], list[str]]:
    """The new text lines of the cache section that spans lines ``start`` … ``last``."""
    explicit = next(h for h in headers if h.index == start).path == CACHE
    own_end = next((h.index for h in headers if start < h.index <= last), last + 1) if explicit else start
    indent = shielded.lines[start].indent
    key_indent = _first_key_indent(shielded, start + 1, own_end, indent + "  ")
    own = tomlkit.parse("".join(shielded.shielded[start:own_end]) if explicit else "[runners.cache]\n")
    table = own["runners"]["cache"]
    old = shielded.document["runners"][0]["cache"]
    notes = []
    old_type = old.get("Type")
    if old_type is not None and str(old_type) != intended["Type"] and not str(old_type).startswith(shielded.prefix):
        notes.append(
            f"runners.config [runners.cache] had Type {_value(str(old_type))}: replaced by the {intended['Type']} store"
        )
    for key in CACHE_KEYS:
        table.pop(key, None)
    kept = tomlkit.dumps(own).split("\n", 1)[1] if "\n" in tomlkit.dumps(own) else ""
    header_line = shielded.shielded[start] if explicit else f"{indent}[runners.cache]\n"
    section = [header_line if header_line.endswith("\n") else header_line + "\n"]
    section += [f"{key_indent}{key} = {_value(intended[key])}\n" for key in CACHE_KEYS]
    section += [kept] if kept.strip() else []
    s3_header = (
        next((h for h in headers if start < h.index <= last and h.path == (*CACHE, "s3")), None) if explicit else None
    )
    s3_indent = shielded.lines[s3_header.index].indent if s3_header else key_indent
    s3_stop = next((h.index for h in headers if s3_header and s3_header.index < h.index <= last), last + 1)
    s3_key_indent = (
        _first_key_indent(shielded, s3_header.index + 1, s3_stop, s3_indent + "  ") if s3_header else s3_indent + "  "
    )
    section += _s3_lines(s3_indent, s3_key_indent, intended)
    for key in old:
        if key != "s3" and isinstance(old[key], dict):
            notes.append(f"removed [runners.cache.{key}] from runners.config: the cache is {intended['Type']} now")
    s3_old = old.get("s3") or {}
    dropped_credentials = [key for key in CREDENTIAL_KEYS if key in s3_old]
    if dropped_credentials:
        notes.append(
            f"removed {', '.join(dropped_credentials)} from runners.config [runners.cache.s3]: credentials come from the Secret only"
        )
    other = [key for key in s3_old if key not in S3_KEYS and key not in CREDENTIAL_KEYS]
    if other:
        notes.append(f"removed {', '.join(other)} from runners.config [runners.cache.s3]: they described another store")
    return section, notes


def _s3_lines(indent: str, key_indent: str, intended: dict[str, str | bool]) -> list[str]:
    return [f"{indent}[runners.cache.s3]\n", *(f"{key_indent}{key} = {_value(intended[key])}\n" for key in S3_KEYS)]


def _insert_section(
    shielded: Shielded, headers: list[_Header], lines: list[str], intended: dict[str, str | bool]
) -> tuple[list[str], list[str]]:
    """``lines`` with a new cache section at the end of the ``[[runners]]`` table (one is made when none exists)."""
    runner = next((h for h in headers if h.path == ("runners",) and h.array), None)
    if runner is None:
        if any(line.strip() for line in lines) and shielded.document.get("runners") is not None:
            raise ConfigError(
                "runners.config defines [[runners]] in a way runner-cache cannot place a [runners.cache] after"
            )
        prefix = lines + ([] if not lines or lines[-1].endswith("\n") else ["\n"])
        return prefix + [
            "[[runners]]\n",
            "  [runners.cache]\n",
            *_cache_lines("    ", intended),
            *_s3_lines("    ", "      ", intended),
        ], []
    stop = next((h.index for h in headers if h.index > runner.index and h.path[:1] != ("runners",)), len(lines))
    last = max(i for i in range(runner.index, stop) if lines[i].strip())
    line = shielded.lines[last]
    after = shielded.lines[last + 1] if last + 1 < len(shielded.lines) else None
    open_block = after.open_blocks[-1] if after and after.open_blocks else None
    if open_block is None and after is None and line.open_blocks:
        open_block = line.open_blocks[-1]
    if open_block is not None:
        raise ConfigError(
            f"runners.config: the [[runners]] table ends inside the template block opened at line {open_block}: "
            "runner-cache cannot place [runners.cache] outside it"
        )
    if line.actions and line.text.rstrip().endswith("-}}"):
        raise ConfigError(
            f"runners.config: line {line.number} ends with a `-}}}}` action, which would join [runners.cache] to it "
            "when rendered: end the [[runners]] table with a plain line"
        )
    sub = next((h for h in headers if h.index > runner.index and h.path[:1] == ("runners",) and len(h.path) > 1), None)
    indent = (
        shielded.lines[sub.index].indent
        if sub
        else _first_key_indent(shielded, runner.index + 1, stop, shielded.lines[runner.index].indent + "  ")
    )
    key_indent = indent + "  "
    section = [
        f"{indent}[runners.cache]\n",
        *_cache_lines(key_indent, intended),
        *_s3_lines(key_indent, key_indent + "  ", intended),
    ]
    head = lines[: last + 1]
    if not head[-1].endswith("\n"):
        head[-1] += "\n"
    return head + section + lines[last + 1 :], []


def _cache_lines(indent: str, intended: dict[str, str | bool]) -> list[str]:
    return [f"{indent}{key} = {_value(intended[key])}\n" for key in CACHE_KEYS]


def _verify(text: str, intended: dict[str, str | bool]) -> None:
    """The merged text must read back as ours (a guard against our own mistakes, not the user's)."""
    cache = Shielded(text).document["runners"][0]["cache"].unwrap()
    got = {key: cache.get(key) for key in CACHE_KEYS} | {key: cache["s3"].get(key) for key in S3_KEYS}
    if got != {key: intended[key] for key in got}:
        raise AssertionError("runners.config merge did not read back as intended")


def cache_section(config: str) -> dict[str, Any] | None:
    """The ``[runners.cache]`` table of a (templated) config as plain data, or None; actions show as ``{{…}}``."""
    shielded = Shielded(config)
    runners = shielded.document.get("runners")
    if not isinstance(runners, AoT) or not runners or "cache" not in runners[0]:
        return None
    data = runners[0]["cache"].unwrap()
    return _unshield(data, shielded)


def _unshield(data: Any, shielded: Shielded) -> Any:
    if isinstance(data, dict):
        return {key: _unshield(value, shielded) for key, value in data.items()}
    if isinstance(data, str) and shielded.prefix in data:
        return re.sub(shielded.prefix + r"\d+x", lambda match: shielded.by_token[match[0]], data)
    return data


def has_cache_section(config: str) -> bool:
    """Whether the (templated) config has a cache section of its own."""
    return cache_section(config) is not None


def outside_cache_section(config: str) -> str:
    """``config`` without its cache section's lines: what a merge must leave byte for byte as it was."""
    shielded = Shielded(config)
    region = _cache_region(shielded, _headers(shielded))
    if region is None:
        return config
    lines = [line.text for line in shielded.lines]
    return "".join(lines[: region[0]] + lines[region[1] + 1 :])


def describe_change(old: str | None, new: str) -> list[str]:
    """What differs between two ``runners.config`` texts, in words: each cache setting (credentials by name only),
    then whether anything outside the cache section changed."""
    try:
        before = _flat(cache_section(old) or {}) if old else {}
        outside_before = outside_cache_section(old) if old else ""
    except ConfigError:
        return ["runners.config replaced (the deployed one is not TOML even with its template actions set aside)"]
    after = _flat(cache_section(new) or {})
    words = []
    gone = sorted({key.rsplit(".", 1)[0] for key in before} - {key.rsplit(".", 1)[0] for key in after})
    words += [f"runners.config [{table}] removed" for table in gone]
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key) or key.rsplit(".", 1)[0] in gone:
            continue
        name = key.rsplit(".", 1)[-1]
        shown = (lambda v: "(set)" if v is not None else "(none)") if name in CREDENTIAL_KEYS else _shown
        words.append(
            f"runners.config [{key.rsplit('.', 1)[0]}] {name}: {shown(before.get(key))} → {shown(after.get(key))}"
        )
    if old is not None and outside_before != outside_cache_section(new):
        words.append("runners.config changed outside [runners.cache]")
    elif old is not None and words:
        words.append("the rest of runners.config unchanged")
    return words


def _flat(table: dict[str, Any], prefix: str = "runners.cache") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}.{key}")
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def _shown(value: Any) -> str:
    return "(none)" if value is None else _value(value) if isinstance(value, str | bool | int) else str(value)
