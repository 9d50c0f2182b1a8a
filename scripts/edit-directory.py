#!/usr/bin/env python3
"""Edits a ZenML directory file the way the reload benches do: a binding of its first team (by
name) as a viewer of its first workspace, appended by one call and removed by the next. The
team's entity changes, and its members' closure with it: a real edit, not a comment (a comment
changes no entity, and a reload would update nothing).

    scripts/edit-directory.py DIRECTORY_YAML

The file's last section must be `bindings:` (as in the bundled sample and every generated set).
"""
import re
import sys


def first_name(text, section):
    """The first `name:` value of a top-level list section (flow or block entries)."""
    start = re.search(rf"^{section}:\s*$", text, re.M)
    if not start:
        sys.exit(f"no `{section}:` section")
    match = re.search(r"\bname:\s*\"?([^\",}\s]+)", text[start.end():])
    if not match:
        sys.exit(f"no entry with a name under `{section}:`")
    return match.group(1)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    team, workspace = first_name(text, "teams"), first_name(text, "workspaces")
    line = f'\n  - {{team: "{team}", role: viewer, workspace: "{workspace}"}} # edited\n'
    text = text[: -len(line)] if text.endswith(line) else text + line
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
