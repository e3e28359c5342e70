"""arm64 under emulation for the tests: Debian's qemu-user-static registered through binfmt_misc with the F flag
(the interpreter is opened at registration, so it runs inside containers too), as Docker Desktop and Debian's
systemd-binfmt do. Needs root; where the kernel or the machine refuses, the reason, for the tests to skip with."""
from __future__ import annotations

import subprocess
from pathlib import Path

BINFMT = Path("/proc/sys/fs/binfmt_misc")
RULE = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # Debian's qemu-user-static: ":qemu-aarch64:M::...:OPF"


def arm64_emulation() -> str | None:
    """Register aarch64 emulation unless it is; None when it works, else why not (one line)."""
    entry = BINFMT / "qemu-aarch64"
    if entry.is_file():
        return None if entry.read_text().startswith("enabled") else f"{entry} is registered but disabled"
    if not RULE.is_file():
        return f"no {RULE}: install Debian's qemu-user-static (scripts/bootstrap.sh does)"
    if not (BINFMT / "register").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True,
                                 text=True)
        if mounted.returncode != 0:
            return f"cannot mount binfmt_misc: {mounted.stderr.strip() or 'not root?'}"
    try:
        (BINFMT / "register").write_text(RULE.read_text().strip())
    except OSError as error:
        return f"the kernel refused to register qemu-aarch64 with binfmt_misc: {error}"
    return None
