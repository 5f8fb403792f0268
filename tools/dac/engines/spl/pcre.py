"""PCRE (Splunk's regex dialect) translated to Python `re` for the SPL checker, or None where the
two differ in a way a check cannot paper over."""

from __future__ import annotations

import re


_NAMED_GROUP = re.compile(r"\(\?(?:P?<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)')")
_NAMED_BACKREF = re.compile(r"\\k(?:<(\w+)>|\{(\w+)\}|'(\w+)')")
_FLAG_GROUP = re.compile(r"\(\?([a-zA-Z]*(?:-[a-zA-Z]*)?)\)")
_CLASS_START = re.compile(r"\[\^?\]?")
_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")


# Recursion, branch reset, callouts, verbs and PCRE conditionals have no Python equivalent.
_PCRE_ONLY_GROUP = re.compile(r"\((?:\?(?:[|R&(C+]|-?\d|P>)|\*)")
_PCRE_ONLY_ESCAPES = frozenset("pPXKRhHVNQEGCceg")


def pcre_to_python(p: str) -> str | None:
    """The same pattern in Python syntax, or None when it uses PCRE features Python lacks.

    (?<name>…) becomes (?P<name>…). PCRE lets an inline flag like (?i) appear anywhere and apply
    to the rest of its group; Python 3.11 only allows that at the very start, so a later one is
    turned into a scoped group (?i:…) that closes with the enclosing group."""
    out: list[str] = []
    owed = [0]              # per open group: ')' still to emit for scoped flag groups; [0] is the top
    i, in_class = 0, False
    while i < len(p):
        c = p[i]
        if c == "\\":
            esc = p[i + 1:i + 2]
            if esc in _PCRE_ONLY_ESCAPES or p.startswith(("\\x{", "\\o{"), i):
                return None
            m = _NAMED_BACKREF.match(p, i)
            if m and not in_class:
                out.append(f"(?P={m.group(1) or m.group(2) or m.group(3)})")
                i = m.end()
                continue
            out.append("\\Z" if esc == "z" else p[i:i + 2])    # PCRE \z is Python's \Z
            i += 2
        elif in_class:
            m = _POSIX_CLASS.match(p, i)
            out.append(m.group() if m else c)
            i = m.end() if m else i + 1
            in_class = bool(m) or c != "]"
        elif c == "[":
            m = _CLASS_START.match(p, i)               # a ']' right after '[' or '[^' is literal
            out.append(m.group())
            i, in_class = m.end(), True
        elif c == "(":
            if p.startswith("(?#", i):                 # comment
                i = p.find(")", i) + 1 or len(p)
                continue
            m = _FLAG_GROUP.match(p, i)
            if m:
                flags = m.group(1)
                if set(flags) - set("imsx-"):
                    return None
                if i == 0 and "-" not in flags:
                    out.append(m.group())
                else:
                    out.append(f"(?{flags}:")
                    owed[-1] += 1
                i = m.end()
                continue
            if _PCRE_ONLY_GROUP.match(p, i):
                return None
            m = _NAMED_GROUP.match(p, i)
            out.append(f"(?P<{m.group(1) or m.group(2)}>" if m else "(")
            i = m.end() if m else i + 1
            owed.append(0)
        elif c == ")" and len(owed) > 1:
            out.append(")" * owed.pop() + ")")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out) + ")" * owed[0]
