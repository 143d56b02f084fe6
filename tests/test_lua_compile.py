"""Every Lua script compiles under Lua 5.1 and touches no global outside Redis's scripting environment.

How: each operation ``lua/<op>.lua`` is prefixed with the shared prelude exactly as
``sessionfence.scripts`` builds it (every ``lua/lib/*.lua`` in sorted order, each followed by a newline).
The unit is compiled with ``loadstring`` in lupa's PUC Lua 5.1 (the dialect Redis embeds), which catches
syntax errors and 5.1 limits (200 locals, 60 upvalues per function) without running anything.

Globals are then checked statically on the compiled bytecode, which is what ``luac -l`` would show: the chunk
is serialised with ``string.dump`` and every function prototype (nested ones included) is scanned for
``GETGLOBAL`` and ``SETGLOBAL`` instructions. In Lua 5.1 a name that is not a local or an upvalue compiles to
exactly those opcodes, so the scan sees every global access on every path, including branches a test run
would never reach; running the script in a sandbox would only see the paths it happened to take. A script
may read only the globals Redis provides (`ALLOWED_GLOBALS`) and may never assign one (Redis refuses both at
run time too, but only on the path that is executed).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

lupa_lua51 = pytest.importorskip("lupa.lua51")

LUA_DIR = Path(__file__).resolve().parents[1] / "lua"

ALLOWED_GLOBALS = frozenset(
    {
        "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct",
        "string", "table", "math",
        "tonumber", "tostring", "type", "pairs", "ipairs", "unpack", "select",
        "error", "pcall", "xpcall", "assert", "next", "rawget", "rawset", "rawequal",
        "setmetatable", "getmetatable",
    }
)  # fmt: skip

# Lua 5.1 opcodes (lopcodes.h) that matter here.
OP_GETGLOBAL = 5
OP_SETGLOBAL = 7
OP_SETLIST = 34


# ------------------------------------------------------------------------------------------------------------
# Building the units exactly like sessionfence.scripts


@dataclass(frozen=True)
class Unit:
    name: str
    source: bytes
    # (first line in the unit, file) for every concatenated piece, to map line numbers back to files.
    pieces: tuple[tuple[int, Path], ...]

    def locate(self, line: int) -> str:
        first, path = self.pieces[0]
        for start, candidate in self.pieces:
            if start <= line:
                first, path = start, candidate
        return f"{path.relative_to(LUA_DIR.parent)}:{line - first + 1}"


def _prelude_files() -> list[Path]:
    return sorted((LUA_DIR / "lib").glob("*.lua"))


def _operation_files() -> list[Path]:
    return sorted(LUA_DIR.glob("*.lua"))


def build_unit(operation: Path | None) -> Unit:
    parts: list[bytes] = []
    pieces: list[tuple[int, Path]] = []
    line = 1
    files = _prelude_files()
    for lib in files:
        data = lib.read_bytes() + b"\n"
        pieces.append((line, lib))
        parts.append(data)
        line += data.count(b"\n")
    if operation is not None:
        pieces.append((line, operation))
        parts.append(operation.read_bytes())
    name = operation.stem if operation is not None else "lib (prelude alone)"
    return Unit(name, b"".join(parts), tuple(pieces))


def _units() -> list[Unit]:
    operations = _operation_files()
    if operations:
        return [build_unit(op) for op in operations]
    if _prelude_files():
        return [build_unit(None)]
    return []


# ------------------------------------------------------------------------------------------------------------
# Compiling and reading Lua 5.1 bytecode

_COMPILE = """
return function(src, name)
  local f, err = loadstring(src, name)
  if not f then return false, err end
  return true, string.dump(f)
end
"""


def compile_lua(source: bytes, chunk_name: str) -> bytes:
    """Compile without running; returns the bytecode or raises AssertionError with Lua's message."""
    lua = lupa_lua51.LuaRuntime(encoding=None)
    ok, result = lua.execute(_COMPILE)(source, ("=" + chunk_name).encode())
    if not ok:
        raise AssertionError(f"Lua 5.1 refused {chunk_name}: {result.decode(errors='replace')}")
    assert isinstance(result, bytes)
    return result


@dataclass(frozen=True)
class GlobalAccess:
    name: str
    write: bool
    line: int


class _Reader:
    """Just enough of ldump.c's format (Lua 5.1) to walk prototypes, constants and line info."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        if data[:4] != b"\x1bLua" or data[4] != 0x51 or data[5] != 0:
            raise AssertionError(f"not Lua 5.1 bytecode: {data[:12]!r}")
        endian = "<" if data[6] == 1 else ">"
        self.size_int, self.size_t, self.size_instr, self.size_num = data[7], data[8], data[9], data[10]
        self.integral = data[11] == 1
        self.pos = 12
        self.fmt_int = endian + {4: "i", 8: "q"}[self.size_int]
        self.fmt_size = endian + {4: "I", 8: "Q"}[self.size_t]
        self.fmt_instr = endian + {4: "I", 8: "Q"}[self.size_instr]
        self.fmt_num = endian + ({4: "i", 8: "q"} if self.integral else {4: "f", 8: "d"})[self.size_num]

    def _unpack(self, fmt: str, size: int) -> int | float:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value  # type: ignore[no-any-return]

    def int_(self) -> int:
        return int(self._unpack(self.fmt_int, self.size_int))

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1]

    def string(self) -> bytes | None:
        size = int(self._unpack(self.fmt_size, self.size_t))
        if size == 0:
            return None
        raw = self.data[self.pos : self.pos + size - 1]  # stored with its trailing NUL
        self.pos += size
        return raw

    def function(self, out: list[GlobalAccess]) -> None:
        self.string()  # source name
        self.int_()  # linedefined
        self.int_()  # lastlinedefined
        for _ in range(4):  # nups, numparams, is_vararg, maxstacksize
            self.byte()
        code = [int(self._unpack(self.fmt_instr, self.size_instr)) for _ in range(self.int_())]
        constants: list[bytes | float | bool | None] = []
        for _ in range(self.int_()):
            tag = self.byte()
            if tag == 0:
                constants.append(None)
            elif tag == 1:
                constants.append(self.byte() != 0)
            elif tag == 3:
                constants.append(self._unpack(self.fmt_num, self.size_num))
            elif tag == 4:
                constants.append(self.string())
            else:
                raise AssertionError(f"unknown constant tag {tag}")
        nested: list[GlobalAccess] = []
        for _ in range(self.int_()):
            self.function(nested)
        lines = [self.int_() for _ in range(self.int_())]
        for _ in range(self.int_()):  # locvars
            self.string()
            self.int_()
            self.int_()
        for _ in range(self.int_()):  # upvalue names
            self.string()
        skip = False
        for pc, instr in enumerate(code):
            if skip:  # the raw operand word of a SETLIST with C == 0 is not an instruction
                skip = False
                continue
            op = instr & 0x3F
            if op == OP_SETLIST and (instr >> 14) & 0x1FF == 0:
                skip = True
            elif op in (OP_GETGLOBAL, OP_SETGLOBAL):
                name = constants[instr >> 14]
                assert isinstance(name, bytes)
                line = lines[pc] if pc < len(lines) else 0
                out.append(GlobalAccess(name.decode(errors="replace"), op == OP_SETGLOBAL, line))
        out.extend(nested)


def global_accesses(bytecode: bytes) -> list[GlobalAccess]:
    out: list[GlobalAccess] = []
    _Reader(bytecode).function(out)
    return out


def global_violations(source: bytes, chunk_name: str, unit: Unit | None = None) -> list[str]:
    try:
        bytecode = compile_lua(source, chunk_name)
    except AssertionError as exc:
        match = re.search(rf"{re.escape(chunk_name)}:(\d+):", str(exc))
        if unit is None or match is None:
            raise
        raise AssertionError(f"{exc}\n(line {match[1]} is {unit.locate(int(match[1]))})") from None
    problems = []
    for access in global_accesses(bytecode):
        where = unit.locate(access.line) if unit is not None else f"{chunk_name}:{access.line}"
        if access.write:
            problems.append(f"{where}: assigns global `{access.name}` (declare it `local`)")
        elif access.name not in ALLOWED_GLOBALS:
            problems.append(f"{where}: reads global `{access.name}`, which Redis scripts do not have")
    return sorted(set(problems))


# ------------------------------------------------------------------------------------------------------------
# The checker checks itself (so a broken parser cannot pass every script silently)


def test_checker_accepts_locals_and_redis_globals() -> None:
    src = b"""
local t = {a = 1, b = {c = 2}}
local function f(x) return redis.call('GET', KEYS[1]) or cjson.encode({x, ARGV[1]}) end
for k, v in pairs(t) do t[k] = tostring(v) end
return f(string.format('%d', #t))
"""
    assert global_violations(src, "ok") == []


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        (b"x = 1", "assigns global `x`"),
        (b"function helper() end", "assigns global `helper`"),
        (b"local function f() y = 2 end return f", "assigns global `y`"),
        (b"return undefined_thing + 1", "reads global `undefined_thing`"),
        (b"local t = {} if ARGV[1] == 'never' then t.x = os.time() end return t", "reads global `os`"),
        (b"return loadstring('return 1')()", "reads global `loadstring`"),
        (b"_G.x = 1", "reads global `_G`"),
    ],
)
def test_checker_refuses_globals(src: bytes, expected: str) -> None:
    problems = global_violations(src, "bad")
    assert any(expected in p for p in problems), problems


def test_checker_reports_syntax_errors() -> None:
    with pytest.raises(AssertionError, match=r"bad:1:"):
        compile_lua(b"local = 1", "bad")


def test_checker_skips_setlist_operand() -> None:
    # > 25,550 list items force SETLIST C == 0 and an extra raw word after it.
    items = b",".join(b"1" for _ in range(26000))
    assert global_violations(b"local t = {" + items + b"} return #t", "big") == []


# ------------------------------------------------------------------------------------------------------------
# The real scripts


def test_scripts_are_discovered() -> None:
    """If lua/ holds any .lua file, discovery must find something to check (guards a silent glob bug)."""
    any_lua = list(LUA_DIR.rglob("*.lua")) if LUA_DIR.is_dir() else []
    if any_lua:
        assert _units(), f"{LUA_DIR} has .lua files but no compile units were built"


_UNITS = _units()


@pytest.mark.parametrize("unit", _UNITS or [None], ids=[u.name for u in _UNITS] or ["no-lua-scripts"])
def test_script_compiles_without_globals(unit: Unit | None) -> None:
    if unit is None:
        assert not (LUA_DIR.is_dir() and any(LUA_DIR.rglob("*.lua")))
        return
    problems = global_violations(unit.source, unit.name, unit)
    assert not problems, f"{unit.name}.lua (with the lib prelude):\n" + "\n".join(problems)
