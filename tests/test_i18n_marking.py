"""Every user-facing string literal is marked for translation, found by reading the code.

"User-facing" here means a string literal (or f-string) with a letter in it that is
- passed to a Streamlit element (``st.button(...)``, ``st.sidebar.caption(...)``, a column's
  or a placeholder's ``.info(...)``...): its positional arguments and its ``label``, ``text``,
  ``help``, ``placeholder`` and ``caption`` keywords, list items included (``st.tabs([...])``);
- printed to the person at a terminal: ``print(...)`` to stdout or stderr, ``sys.stderr.write``,
  and the ``help`` and ``description`` of argparse parsers and arguments (``--help``);
- the message of a project error (a class of models/errors.py, or ``ValueError`` raised in a
  config validator, whose message pydantic shows as the config error).
Marked means it is the first argument of ``_``, ``n_``, ``t`` or ``tn`` (models/i18n.py,
views/i18n.py) — a call, not a literal, reaches the element. Strings with no letters
("**", "—", "📄") need no translation.
"""

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

MARKERS = {"_", "n_", "t", "tn"}
ELEMENTS = {
    "button", "download_button", "selectbox", "multiselect", "radio", "checkbox", "toggle", "slider",
    "number_input", "text_input", "text_area", "file_uploader", "chat_input", "markdown", "caption",
    "info", "warning", "error", "success", "toast", "title", "header", "subheader", "write", "text",
    "tabs", "expander", "spinner", "progress", "metric", "status", "popover", "form_submit_button",
    "set_page_config", "json", "code",
}
KEYWORDS = {"label", "text", "help", "placeholder", "caption", "page_title"}
CODE_ELEMENTS = {"code", "json"}  # show data: their literals are checked only as labels
ERRORS = {node.name for node in ast.walk(ast.parse((ROOT / "models" / "errors.py").read_text()))
          if isinstance(node, ast.ClassDef)}
CONFIG = "models/config.py"  # where a ValueError is a config error a person reads
LOGGERS = {"log", "logger", "logging"}  # log.warning(...) speaks to developers
LETTER = re.compile(r"[^\W\d_]")


def sources() -> list[Path]:
    return [ROOT / "app.py", ROOT / "cli.py", ROOT / "api.py",
            *sorted(p for folder in ("views", "models", "managers", "routes") for p in (ROOT / folder).rglob("*.py"))]


def _has_letters(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(LETTER.search(node.value))
    if isinstance(node, ast.JoinedStr):
        return any(_has_letters(part) for part in node.values if isinstance(part, ast.Constant))
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_has_letters(item) for item in node.elts)
    if isinstance(node, ast.IfExp):
        return _has_letters(node.body) or _has_letters(node.orelse)
    if isinstance(node, ast.BinOp):  # "a" + "b", "text %s" % x
        return _has_letters(node.left) or _has_letters(node.right)
    return False


def _is_streamlit_element(call: ast.Call) -> bool:
    """``x.element(...)`` where x is st, st.sidebar, or anything else (a column, a slot) but a logger."""
    return (isinstance(call.func, ast.Attribute) and call.func.attr in ELEMENTS
            and not (isinstance(call.func.value, ast.Name) and call.func.value.id in LOGGERS))


def _is_argparse(call: ast.Call) -> bool:
    """An argparse parser, sub-parser or argument: its help and description are read in --help."""
    name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)
    return name in ("ArgumentParser", "add_parser", "add_argument", "add_subparsers")


def _is_printed(call: ast.Call) -> bool:
    """print(...) to the terminal (stdout or stderr; not to a file handle), or sys.std*.write."""
    if isinstance(call.func, ast.Name) and call.func.id == "print":
        return all(k.arg != "file" or ast.unparse(k.value) in ("sys.stderr", "sys.stdout") for k in call.keywords)
    return ast.unparse(call.func) in ("sys.stderr.write", "sys.stdout.write")


def _is_error(call: ast.Call, file: str) -> bool:
    name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)
    return name in ERRORS or (name == "ValueError" and file == CONFIG)


def unmarked(source: str, name: str) -> list[str]:
    """'file:line: the literal' for every user-facing literal in ``source`` that is not marked."""
    found = []
    for call in (n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)):
        if _is_streamlit_element(call):
            args = [] if call.func.attr in CODE_ELEMENTS else list(call.args)
            args += [k.value for k in call.keywords if k.arg in KEYWORDS]
        elif _is_argparse(call):
            args = [k.value for k in call.keywords if k.arg in ("help", "description")]
        elif _is_printed(call) or _is_error(call, name):
            args = list(call.args[:1])
        else:
            continue
        found += [f"{name}:{arg.lineno}: {ast.unparse(arg)}" for arg in args if _has_letters(arg)]
    return found


def test_the_check_finds_an_unmarked_string_and_accepts_a_marked_one():
    """The check itself, on code written to be caught: it must not pass for want of looking."""
    caught = unmarked('''
st.sidebar.button("Load")
left.info(f"Loaded {name}")
st.tabs(["Text", t("Markdown")])
print(f"wrote {path}", file=sys.stderr)
print("not evaluated")
sys.stderr.write("cancelling")
parser.add_argument("--out", help="where files go")
raise InputError("The file is empty.")
st.selectbox("Mode", options, format_func=t)
''', "x.py") + unmarked('raise ValueError(f"models.{key}: no backend")', CONFIG)
    assert [c.split(": ", 1)[1] for c in caught] == [
        "'Load'", "f'Loaded {name}'", "['Text', t('Markdown')]", "f'wrote {path}'", "'not evaluated'",
        "'cancelling'", "'where files go'",
        "'The file is empty.'", "'Mode'", "f'models.{key}: no backend'"]
    assert unmarked('''
st.sidebar.button(t("Load"))
left.info(t("Loaded {name}", name=name))
st.caption(tr(exc))
st.markdown(f"**{label}**")
st.code(page.text or "(no text)")
print(t("wrote {path}", path=path), file=sys.stderr)
print("not for people", file=out)
log.warning("for developers: %s", detail)
raise InputError(_("The file is empty."))
st.sidebar.title("📄 ChatVLMLLM")
''', "x.py") == ["x.py:11: '📄 ChatVLMLLM'"]  # a name with letters is still text: brand names are marked too


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_user_facing_string_is_marked(path):
    assert unmarked(path.read_text(), str(path.relative_to(ROOT))) == []
