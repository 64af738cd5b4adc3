"""All SQL is parameterized (issue 7), checked on the source with ``ast``.

The rule, for every module of the installed packages (agents, environment,
orchestration, evaluation, training):

1. SQL text is never built with ``%`` or ``str.format``.
2. An f-string that is SQL may only interpolate
   - placeholders: ``",".join("?" * n)``, directly or through a local name
     every assignment of which is such a join (``marks = ",".join("?" * len(ids))``);
   - module constants (``UPPER_CASE`` names: fixed column lists, fixed SQL);
   - a reviewed identifier listed in ``REVIEWED`` below (table and column
     names taken from the schema, never from input), with why it is safe.
   A constant SQL template may be ``.format``-ed only at a reviewed site.
3. The SQL argument of ``execute``/``executemany``/``executescript`` and of
   the store's ``fetchall``/``fetchone``/``fetchval`` is a literal, such an
   f-string, a name, or a ``+`` of those where every name is a constant, a
   placeholder join or a reviewed variable of literal fragments.
Values always travel as parameters (``?``). A new interpolation fails this
test until it is reviewed and added to ``REVIEWED``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "agents", "environment", "orchestration", "evaluation", "training", "inspection")
CALLS = {"execute", "executemany", "executescript", "fetchall", "fetchone", "fetchval"}
SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|PRAGMA|CREATE|DROP|ALTER|WITH|ATTACH)\b", re.IGNORECASE)
SQL_WORDS = re.compile(r"\b(SELECT .+ FROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|PRAGMA|WHERE \w+ (=|IN|LIKE))",
                       re.IGNORECASE | re.DOTALL)

# (file, interpolated expression) -> why it is not a value
REVIEWED = {
    ("environment/store/_store.py", "v + 1"): "schema version integer from the migration loop (PRAGMA takes no ?)",
    ("environment/store/_store.py", "version"): "schema version integer from code (PRAGMA takes no ?)",
    ("environment/store/_merge.py", "spec.name"): "table name from the merge's fixed TableSpec list",
    ("environment/store/_merge.py", "spec.order"): "ORDER BY clause from the fixed TableSpec list",
    ("environment/store/_merge.py", "cols"): "column names from the TableSpec / PRAGMA table_info",
    ("environment/store/_merge.py", "extra"): "fixed column suffix chosen from a literal dict",
    ("environment/store/_merge.py", "table"): "table name from the fixed TableSpec list (PRAGMA table_info)",
    ("environment/store/_merge.py", "where"): "a shard's WHERE clause from the fixed TREE_TABLES / EVAL_TABLES lists (ids travel as :ids)",
    ("environment/store/_merge.py", "', '.join(cols)"): "column names from PRAGMA table_info",
    ("environment/store/_merge.py", "', '.join(insert_cols)"): "column names from PRAGMA table_info",
    ("tests/support/sample_db.py", "table"): "sample-data builder: fixed table names in code",
    ("tests/support/sample_db.py", "cols"): "sample-data builder: keys of literal dicts in code",
    # SQL assembled from literal fragments in variables, values as ? parameters
    ("environment/store/_trees.py", "sql_from"): "literal FROM/JOIN plus literal conditions with ? (_tree_filter)",
    ("environment/store/_trees.py", "where"): "'' or literal conditions with ? parameters (_export_where)",
}


def _is_placeholder_join(node: ast.AST) -> bool:
    """``"<sep>".join("?" * n)`` or ``"<sep>".join("?" for ...)``."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant) and len(node.args) == 1):
        return False
    arg = node.args[0]
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mult):
        return any(isinstance(x, ast.Constant) and x.value == "?" for x in (arg.left, arg.right))
    if isinstance(arg, ast.GeneratorExp | ast.ListComp):
        return isinstance(arg.elt, ast.Constant) and arg.elt.value == "?"
    return False


def _constant_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and re.fullmatch(r"_?[A-Z][A-Z0-9_]*", node.id) is not None


def _looks_like_sql(text: str) -> bool:
    return bool(SQL_START.search(text) or SQL_WORDS.search(text))


def violations(source: str, rel: str) -> list[str]:
    """Every breach of the rule in one module's source."""
    tree = ast.parse(source)
    assigned: dict[str, list[ast.AST]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value)
    placeholder_names = {n for n, values in assigned.items() if all(_is_placeholder_join(v) for v in values)}

    def safe_piece(expr: ast.AST) -> bool:
        return (_is_placeholder_join(expr) or _constant_name(expr)
                or (isinstance(expr, ast.Name) and expr.id in placeholder_names)
                or (rel, ast.unparse(expr)) in REVIEWED)

    found = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.JoinedStr):
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if _looks_like_sql(literal):
                for v in node.values:
                    if isinstance(v, ast.FormattedValue) and not safe_piece(v.value):
                        found.append(f"{where}: f-string SQL interpolates {ast.unparse(v.value)!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
                    and _looks_like_sql(node.left.value):
                found.append(f"{where}: SQL built with %")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "format" and isinstance(node.func.value, ast.Constant) \
                    and isinstance(node.func.value.value, str) and _looks_like_sql(node.func.value.value):
                found.append(f"{where}: SQL built with str.format")
            if node.func.attr in CALLS and node.args:
                sql = node.args[0]
                parts = _add_operands(sql)
                if len(parts) > 1:
                    for part in parts:
                        ok = (isinstance(part, ast.Constant | ast.JoinedStr) or _constant_name(part)
                              or (isinstance(part, ast.Name) and part.id in placeholder_names)
                              or (rel, ast.unparse(part)) in REVIEWED)
                        if not ok:
                            found.append(f"{where}: SQL concatenated with {ast.unparse(part)!r}")
                elif not isinstance(sql, ast.Constant | ast.JoinedStr | ast.Name | ast.Attribute | ast.Lambda
                                    | ast.Subscript) and (rel, ast.unparse(sql)) not in REVIEWED:
                    found.append(f"{where}: SQL argument is {ast.unparse(sql)[:60]!r}")
    return found


def _add_operands(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _add_operands(node.left) + _add_operands(node.right)
    return [node]


def test_every_sql_statement_is_parameterized() -> None:
    found, scanned = [], 0
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found += violations(path.read_text(), path.relative_to(ROOT).as_posix())
            scanned += 1
    assert scanned > 50
    assert found == [], "\n".join(found)


def test_reviewed_exceptions_still_exist() -> None:
    """A REVIEWED entry whose code is gone is removed, so the list stays a review of real code."""
    for rel, expr in REVIEWED:
        tree = ast.parse((ROOT / rel).read_text())
        pieces = {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.expr)}
        assert expr in pieces, (rel, expr)


def test_the_checker_catches_values_in_sql() -> None:
    bad = '''
def f(conn, name, ids, n):
    conn.execute(f"SELECT * FROM personas WHERE text = '{name}'")
    conn.execute("SELECT * FROM trees WHERE id = %d" % n)
    conn.execute("DELETE FROM nodes WHERE tree_id = {}".format(n))
    conn.execute("SELECT * FROM runs WHERE kind = '" + name + "'")
    sql = f"UPDATE trees SET status = 'x' WHERE id IN ({','.join(str(i) for i in ids)})"
'''
    found = violations(bad, "bad.py")
    assert {int(f.split(":")[1]) for f in found} == {3, 4, 5, 6, 7}, found
    good = '''
COLS = "id, text"
def f(conn, ids, name):
    marks = ",".join("?" * len(ids))
    conn.execute(f"SELECT {COLS} FROM persona_items WHERE id IN ({marks}) AND text = ?", (*ids, name))
    conn.execute(f"SELECT * FROM trees WHERE id IN ({','.join('?' * len(ids))})", ids)
    conn.execute("SELECT " + COLS + " FROM persona_items WHERE text = ?", (name,))
'''
    assert violations(good, "good.py") == []


STORE = "environment/store/"
# SQL as it is written in this code base (upper-case keywords), not English that happens to say "select"
STATEMENT = re.compile(r"\b(SELECT\b.*\bFROM\b|INSERT (OR \w+ )?INTO\b|UPDATE \w+ SET\b|DELETE FROM\b|"
                       r"REPLACE INTO\b|(CREATE|DROP|ALTER) (TABLE|INDEX)\b|PRAGMA \w+)", re.DOTALL)


def sql_outside_the_store(source: str, rel: str) -> list[str]:
    """SQL text, and calls that run SQL, in a module outside ``environment/store``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and STATEMENT.search(node.value):
            found.append(f"{where}: SQL text {node.value[:60]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CALLS:
            found.append(f"{where}: .{node.func.attr}(...)")
    return found


def test_sql_lives_only_in_the_store_repositories() -> None:
    """Issue 15.1: the typed repositories of ``environment/store`` are the only
    code that reads or writes tables; every other module calls them."""
    found, scanned = [], 0
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(STORE):
                continue
            found += sql_outside_the_store(path.read_text(), rel)
            scanned += 1
    assert scanned > 50
    assert found == [], "\n".join(found)


def test_the_outside_check_catches_sql() -> None:
    bad = '''
def f(conn, store):
    conn.execute("UPDATE trees SET status = 'x'")
    q = "SELECT id FROM runs WHERE kind = ?"
    store.fetchall(q)
    sql = f"DELETE FROM nodes WHERE tree_id = {tree}"
'''
    assert {int(f.split(":")[1]) for f in sql_outside_the_store(bad, "bad.py")} == {3, 4, 5, 6}
    good = '''
def f(store, tree_id):
    """Select the runs of a tree, then update nothing, delete from nowhere."""
    text = "Insert coin".replace("coin", "token")
    return store.read(lambda c: Trees(c).nodes(tree_id))
'''
    assert sql_outside_the_store(good, "good.py") == []
