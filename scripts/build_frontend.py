"""Build the web chat: `frontend/` plus its pinned browser libraries, with every asset under a hashed path.

    python scripts/build_frontend.py [OUT]      # default frontend/dist

The page has no bundler: its ES modules import each other by relative path. So instead of hashing each
file name (which would mean rewriting imports), the whole asset tree goes under `assets/<hash>/`, where
the hash covers every asset's path and bytes. `index.html` is rewritten to point there; it and
`config.json` are the only files that must never be cached, everything under `assets/<hash>/` can be
cached for a year. The local stack serves the same build that `scripts/publish_frontend.py` uploads.
"""

from __future__ import annotations

import hashlib
import mimetypes
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"

VENDOR = {
    "vendor/marked.esm.js": "node_modules/marked/lib/marked.esm.js",
    "vendor/purify.es.mjs": "node_modules/dompurify/dist/purify.es.mjs",
}
"""Where each pinned library (frontend/package-lock.json) lands under the assets, and where npm put it."""

NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


class BuildError(Exception):
    """The frontend cannot be built; the message says what to run."""


@dataclass(frozen=True)
class BuiltFile:
    """One file of a build: where it goes (relative URL path) and how it may be cached."""

    path: str
    source: Path
    content_type: str
    cache_control: str


@dataclass(frozen=True)
class Build:
    """A built frontend: a folder ready to serve, and its files in upload order (assets before the page)."""

    root: Path
    asset_prefix: str
    files: tuple[BuiltFile, ...]


def content_type(path: str) -> str:
    """The Content-Type a file of the build is served with."""
    suffix = Path(path).suffix
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path)
    if guessed is None:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def cache_control(path: str) -> str:
    """Hashed assets are immutable; the page and its runtime config are revalidated on every load."""
    return IMMUTABLE if path.startswith("assets/") else NO_CACHE


def _sources(source: Path) -> dict[str, Path]:
    assets = source / "assets"
    if not (source / "index.html").is_file() or not assets.is_dir():
        raise BuildError(
            f"{source} has no index.html and assets/: is this a checkout of serverless-openclaw?"
        )
    files = {p.relative_to(assets).as_posix(): p for p in sorted(assets.rglob("*")) if p.is_file()}
    for target, installed in VENDOR.items():
        path = source / installed
        if not path.is_file():
            raise BuildError(
                f"{path} is missing: the web chat's pinned libraries are not installed. "
                "Run `make frontend` (npm ci in frontend/)."
            )
        files[target] = path
    return files


def build(out: Path, source: Path = FRONTEND) -> Build:
    """Build into `out` (emptied first) and describe what was written."""
    files = _sources(source)
    page = (source / "index.html").read_text(encoding="utf-8")
    if '"assets/' not in page:
        raise BuildError(f'{source / "index.html"} does not reference "assets/…"')
    if out.resolve() == source.resolve() or out.resolve() in source.resolve().parents:
        raise BuildError(
            f"{out} would hold the sources themselves; build somewhere else (e.g. frontend/dist)"
        )
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    prefix = f"assets/{digest.hexdigest()[:16]}"
    if out.exists():
        shutil.rmtree(out)
    built: list[BuiltFile] = []
    for name, path in sorted(files.items()):
        target = out / prefix / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        url_path = f"{prefix}/{name}"
        built.append(BuiltFile(url_path, target, content_type(url_path), cache_control(url_path)))
    (out / "index.html").write_text(page.replace('"assets/', f'"{prefix}/'), encoding="utf-8")
    built.append(BuiltFile("index.html", out / "index.html", content_type("index.html"), NO_CACHE))
    return Build(root=out, asset_prefix=prefix, files=tuple(built))


def main(argv: list[str] | None = None) -> int:
    """Build into the folder given (default frontend/dist) and print where the assets went."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else FRONTEND / "dist"
    try:
        result = build(out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"built {len(result.files)} files into {out} (assets under {result.asset_prefix}/)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
