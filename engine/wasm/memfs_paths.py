"""emscripten's PATH helpers (normalize, basename, dirname), as the MemFS resolves paths with them."""

from __future__ import annotations


def normalize_parts(path: str) -> list[str]:
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return out


def basename(path: str) -> str:
    """emscripten's PATH.basename."""
    if path == "/":
        return "/"
    parts = normalize_parts(path)
    return parts[-1] if parts else ("" if path.startswith("/") else ".")


def dirname(path: str) -> str:
    parts = normalize_parts(path)
    return "/" + "/".join(parts[:-1])
