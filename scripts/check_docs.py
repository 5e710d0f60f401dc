#!/usr/bin/env python3
"""Check that every link in the project's Markdown resolves inside the repository.

Checks README.md, CHANGELOG.md, SECURITY.md and every docs/**/*.md. Outside fenced code blocks
and inline code, every inline link [text](target) and image ![alt](target) must be either an
in-page #anchor that exists, or a relative path to a file or directory of the repository, with
an optional #anchor that exists in that Markdown file. Anchors follow GitHub's rules: the
heading's text in lowercase, spaces to hyphens, punctuation other than hyphens and underscores
dropped, and -1, -2, ... appended to repeated headings. Links to http:// or https:// (and any
other scheme), autolinks <https://...> and bare URLs in prose, which GitHub also renders as
links, are errors: nothing may point outside the repository.

Prints each problem as file:line: message and exits 1 if there is any; otherwise prints
"docs: N links checked, all resolve" and exits 0. Standard library only.

    python3 scripts/check_docs.py
"""

import os
import re
import sys
from urllib.parse import unquote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL = ["README.md", "CHANGELOG.md", "SECURITY.md"]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*?(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HTML_TAG = re.compile(r"<[^>]+>")
# [text](target) or ![alt](target), text with one level of nested brackets, target with one
# level of balanced parentheses, and an optional "title".
LINK = re.compile(
    r"(!?)\[((?:[^\[\]\\]|\\.|\[[^\[\]]*\])*)\]"
    r"\(\s*(<[^>\n]*>|(?:[^()\s\\]|\\.|\([^()\s]*\))*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]*)>", re.IGNORECASE)
BARE_URL = re.compile(r"(?<![\w/.@-])(?:https?://|www\.)[^\s<>()]+", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def markdown_files():
    files = [name for name in TOP_LEVEL if os.path.isfile(os.path.join(ROOT, name))]
    docs = os.path.join(ROOT, "docs")
    found = []
    for directory, _, names in os.walk(docs):
        for name in names:
            if name.endswith(".md"):
                found.append(os.path.relpath(os.path.join(directory, name), ROOT))
    return files + sorted(found)


def prose_lines(text):
    """(line number, line) for each line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.split("\n"), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                fence = match.group(1)
                continue
            yield number, line
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and match.group(2).strip() == "":
            fence = None


def without_code_spans(line):
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def heading_text(raw):
    """The text GitHub renders for a heading's Markdown source."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), raw)
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", text)
    text = HTML_TAG.sub("", text)
    return text


def slug(text):
    text = heading_text(text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


_anchor_cache = {}


def anchors(path):
    """Every anchor a Markdown file offers: its headings' slugs and HTML name/id anchors."""
    if path in _anchor_cache:
        return _anchor_cache[path]
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    seen = {}
    result = set()
    previous = ""
    for _, line in prose_lines(text):
        for name in HTML_ANCHOR.findall(line):
            result.add(name)
        heading = None
        match = ATX.match(line)
        if match:
            heading = match.group(2) or ""
        elif SETEXT.match(line) and previous.strip() and not previous.lstrip().startswith(
                ("|", "-", "*", "+", ">")) and not ATX.match(previous):
            heading = previous.strip()
        if heading is not None:
            base = slug(heading)
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else "%s-%d" % (base, count))
        previous = line
    _anchor_cache[path] = result
    return result


def check_target(source, target):
    """None when the link resolves, else what is wrong."""
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target:
        return "empty link target"
    if SCHEME.match(target):
        if target.lower().startswith(("http://", "https://")):
            return "external link %s: links must stay inside the repository" % target
        return "link %s points outside the repository" % target
    path_part, _, anchor = target.partition("#")
    path_part = path_part.split("?", 1)[0]
    if path_part == "":
        if not anchor:
            return "empty anchor"
        if unquote(anchor) not in anchors(source):
            return "no heading for #%s in this file" % anchor
        return None
    path_part = unquote(path_part)
    if path_part.startswith("/"):
        resolved = os.path.normpath(os.path.join(ROOT, path_part.lstrip("/")))
    else:
        resolved = os.path.normpath(os.path.join(os.path.dirname(source), path_part))
    if os.path.commonpath([resolved, ROOT]) != ROOT:
        return "%s points outside the repository" % target
    if not os.path.exists(resolved):
        return "%s does not exist" % os.path.relpath(resolved, ROOT)
    if "#" in target:
        if not anchor:
            return "empty anchor in %s" % target
        if not resolved.endswith(".md") or not os.path.isfile(resolved):
            return "anchor #%s on %s, which is not a Markdown file" % (
                anchor, os.path.relpath(resolved, ROOT))
        if unquote(anchor) not in anchors(resolved):
            return "no heading for #%s in %s" % (anchor, os.path.relpath(resolved, ROOT))
    return None


def check_file(relative):
    path = os.path.join(ROOT, relative)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    problems = []
    checked = 0
    for number, line in prose_lines(text):
        prose = without_code_spans(line)
        for match in LINK.finditer(prose):
            checked += 1
            problem = check_target(path, match.group(3).strip())
            if problem:
                kind = "image" if match.group(1) else "link"
                problems.append("%s:%d: %s: %s" % (relative, number, kind, problem))
        rest = LINK.sub(" ", prose)
        for match in AUTOLINK.finditer(rest):
            checked += 1
            problems.append("%s:%d: autolink <%s>: links must stay inside the repository"
                            % (relative, number, match.group(1)))
        rest = AUTOLINK.sub(" ", rest)
        for match in BARE_URL.finditer(rest):
            checked += 1
            problems.append("%s:%d: bare URL %s is rendered as an external link: put it in "
                            "backticks or remove it" % (relative, number, match.group(0)))
    return checked, problems


def main():
    total = 0
    problems = []
    for relative in markdown_files():
        checked, found = check_file(relative)
        total += checked
        problems.extend(found)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print("docs: %d links checked, all resolve" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
