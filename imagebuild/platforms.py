"""The platforms an image is built for: one table, with the name each tool gives each one (Docker and OCI say
linux/arm64 and variant v8, Debian says arm64, the kernel, the manylinux tags and the multiarch triplet say
aarch64). A build's default is the Docker engine's own platform: on Docker Desktop on an Apple Silicon Mac that is
linux/arm64, built natively.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The runtime's glibc (Debian 13: 2.41): a wheel runs on it if its manylinux tag is 2.41 or older.
RUNTIME_GLIBC = (2, 41)
PYTHON_VERSION = "3.13"


@dataclass(frozen=True)
class Platform:
    """One platform, as each tool names it."""

    name: str  # Docker's and OCI's os/architecture: linux/arm64
    debian: str  # Debian's architecture: arm64 (.deb names, dists/SUITE/main/binary-ARCH)
    machine: str  # the kernel's: aarch64 (uname -m, manylinux tags, the multiarch triplet)
    variant: str | None = None  # OCI's variant: v8 for arm64

    @property
    def architecture(self) -> str:
        """OCI's architecture (the image config's "architecture")."""
        return self.name.split("/", 1)[1]

    @property
    def triplet(self) -> str:
        """Debian's multiarch folder name: aarch64-linux-gnu (usr/lib/TRIPLET)."""
        return f"{self.machine}-linux-gnu"

    def wheel_tags(self) -> list[str]:
        """Every manylinux tag the runtime's glibc runs, spelled out: pip takes one tag per --platform and does not
        widen manylinux_2_28 to older ones (scikit-learn 1.5-1.7's cp313 wheels are manylinux_2_17 only). pip
        prefers them in this order: 2_28 first (what the image was built with so far), then older, then newer."""
        older = [f"manylinux_2_{minor}_{self.machine}" for minor in range(27, 16, -1)]
        newer = [f"manylinux_2_{minor}_{self.machine}" for minor in range(29, RUNTIME_GLIBC[1] + 1)]
        return [f"manylinux_2_28_{self.machine}", *older, f"manylinux2014_{self.machine}", *newer]

    def runtime(self) -> str:
        """The runtime a wheel must suit, in words (for error lines)."""
        return f"CPython {PYTHON_VERSION} on glibc {RUNTIME_GLIBC[0]}.{RUNTIME_GLIBC[1]} {self.machine} " \
               f"(manylinux 2.17 to 2.41)"


AMD64 = Platform("linux/amd64", "amd64", "x86_64")
ARM64 = Platform("linux/arm64", "arm64", "aarch64", "v8")
PLATFORMS = {platform.name: platform for platform in (AMD64, ARM64)}
# What Docker's /version reports as "Arch", and the kernel's machine names, for each platform.
BY_ARCH = {**{platform.architecture: platform for platform in PLATFORMS.values()},
           **{platform.machine: platform for platform in PLATFORMS.values()}}


def parse(text: str) -> list[Platform]:
    """`linux/amd64,linux/arm64` as platforms, in the order given, each once; ValueError with one line for a
    platform the build cannot make ("linux/arm64/v8" is linux/arm64)."""
    chosen: list[Platform] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name = item[:-3] if item == "linux/arm64/v8" else item
        if name not in PLATFORMS:
            raise ValueError(f"platform {item!r}: the image is built for {' and '.join(PLATFORMS)} (the Debian 13 "
                             f"and manylinux platforms whose packages the lock pins)")
        if PLATFORMS[name] not in chosen:
            chosen.append(PLATFORMS[name])
    if not chosen:
        raise ValueError(f"no platform given: name one or more of {', '.join(PLATFORMS)}, separated by commas")
    return chosen


def of_engine(client: Any) -> Platform:
    """The Docker engine's own platform (what it builds and runs without emulation)."""
    arch = str(client.version().get("Arch", ""))
    if arch not in BY_ARCH:
        raise ValueError(f"the Docker engine runs on {arch or 'an unknown architecture'}; the image is built for "
                         f"{' and '.join(PLATFORMS)}")
    return BY_ARCH[arch]
