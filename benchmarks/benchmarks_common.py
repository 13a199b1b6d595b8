"""What the benchmark scripts share: docs/benchmarks.md holds one section per script."""

from __future__ import annotations

from pathlib import Path

from infertune.io import write_bytes_atomic


def replace_section(path: Path, section: str) -> None:
    """docs/benchmarks.md holds one section per benchmark script; replace ours, keep the others."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n\nEvery figure here was printed by the script named in its section.\n"
    header = section.splitlines()[0]
    if header in text:
        start = text.index(header)
        nxt = text.find("\n## ", start + len(header))
        text = text[:start] + section.rstrip() + "\n" + (text[nxt:] if nxt != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    write_bytes_atomic(path, text.encode())


def header(title: str, script: str, quick: bool, description: str) -> list[str]:
    """A section's opening lines: what wrote it, how it measured, and on which hardware and versions."""
    from infertune.bench.hardware import fingerprint, versions
    from infertune.report.terminal import hardware_line

    hw = fingerprint()
    memory = f"; memory {hw['memory_bytes'] / 2**30:.0f} GiB" if hw.get("memory_bytes") else ""
    return [f"## {title}", "",
            f"Written by `{script}`" + (" (--quick: smoke figures, not for quoting)" if quick else "") + ". "
            + description, "",
            f"Hardware: {hardware_line(hw)}{memory}.", "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()), ""]
