"""A block device for a lab instance's disk limits: a loop device on a sparse file, removed after.

cgroup io limits need a real block device (major:minor); a loop device on a file in a temporary
directory gives one without touching the host's disks, and is detached even when the work fails.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from contextlib import contextmanager
from typing import Iterator

from vmqos.core.errors import KernelError


@contextmanager
def loop_device(size_bytes: int = 64 << 20, prefix: str = "vmqos-demo-") -> Iterator[str]:
    """The path of a new loop device (/dev/loopN) backed by a sparse file of `size_bytes`."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    image = os.path.join(tmp, "disk.img")
    try:
        with open(image, "wb") as f:
            f.truncate(size_bytes)
        done = subprocess.run(["losetup", "-f", "--show", image], capture_output=True, text=True)
        if done.returncode != 0:
            raise KernelError(f"losetup -f --show {image}: {done.stderr.strip() or 'failed'} (needs root and "
                              "the loop driver)")
        loop = done.stdout.strip()
        try:
            yield loop
        finally:
            subprocess.run(["losetup", "-d", loop], check=False)
    finally:
        if os.path.exists(image):
            os.unlink(image)
        os.rmdir(tmp)
