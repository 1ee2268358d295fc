#!/usr/bin/env python3
"""Fails when a function, initializer or accessor body in Sources/ is longer than the limit (default 60 lines).

  .ci/function_length.py [--max N] [PATH ...]

A body is counted from the line after its opening brace to the line before its closing brace. Braces inside
string literals and comments are skipped. Prints every offender as `path:line: name is N lines (max M)`.
"""
import re
import sys
from pathlib import Path

DECL = re.compile(r"\b(func\s+[^\s(<]+|init[?!]?|deinit|get|set|willSet|didSet|struct|class|enum|protocol|extension|actor)\b")
TYPES = {"struct", "class", "enum", "protocol", "extension", "actor"}


def strip(source):
    """The source with string literals (also multi-line) and comments blanked, newlines kept."""
    out, i, n = [], 0, len(source)
    while i < n:
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", source[i:j])); i = j
        elif source.startswith('"""', i):
            j = source.find('"""', i + 3)
            j = n if j < 0 else j + 3
            out.append(re.sub(r"[^\n]", " ", source[i:j])); i = j
        elif source[i] == '"':
            j, depth = i + 1, 0
            while j < n and source[j] != "\n":
                if source[j] == "\\" and j + 1 < n and source[j + 1] == "(":
                    depth += 1; j += 2; continue
                if source[j] == "\\":
                    j += 2; continue
                if depth and source[j] == ")":
                    depth -= 1
                elif not depth and source[j] == '"':
                    break
                j += 1
            out.append(" " * (j + 1 - i)); i = j + 1
        else:
            out.append(source[i]); i += 1
    return "".join(out)


def offenders(path, limit):
    text = strip(path.read_text(encoding="utf-8"))
    lines = text.split("\n")
    found = []
    pending = []  # declarations waiting for their opening brace: (name, line, parenthesis depth)
    stack = []  # open braces: (name or None, line)
    parens = 0  # a default-argument closure `= { _ in }` inside a signature is not the body
    for number, line in enumerate(lines, 1):
        for match in re.finditer(r"\{|\}|\(|\)|" + DECL.pattern, line):
            token = match.group(0)
            if token in "()":
                parens += 1 if token == "(" else -1
            elif token == "{":
                if pending and pending[-1][2] == parens:
                    stack.append((pending.pop()[0], number))
                    pending.clear()
                else:
                    stack.append((None, number))
            elif token == "}":
                pending.clear()
                if not stack:
                    continue
                name, start = stack.pop()
                body = number - start - 1
                if name and body > limit:
                    found.append(f"{path}:{start}: {name} is {body} lines (max {limit})")
            else:
                if token in ("get", "set", "willSet", "didSet") and not re.match(r"\s*\{", line[match.end():]):
                    continue
                pending.append((None if token in TYPES else token, number, parens))
    return found


def main(argv):
    limit = 60
    if argv[:1] == ["--max"]:
        limit, argv = int(argv[1]), argv[2:]
    roots = [Path(p) for p in (argv or ["Sources"])]
    files = sorted(f for root in roots for f in ([root] if root.is_file() else root.rglob("*.swift")))
    problems = [problem for f in files for problem in offenders(f, limit)]
    for problem in problems:
        print(problem)
    print(f"function length: {len(problems)} bodies over {limit} lines in {len(files)} files")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
