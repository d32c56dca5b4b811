"""A FUSE filesystem whose statfs hangs: what a mount of a dead NFS (or sshfs, s3fs) server
looks like from the node. Used by tests/e2e_mounts.rs.

Usage: /usr/bin/python3 tests/hangfs.py MOUNTPOINT RELEASE_FILE
statfs blocks until RELEASE_FILE exists, then answers (a server that came back). Runs in the
foreground; unmount with `umount -l MOUNTPOINT`. Needs root, /dev/fuse and Debian's
python3-fusepy (module `fusepy`, on libfuse2).
"""
import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations


class HangingStatfs(Operations):
    def __init__(self, release):
        self.release = release

    def getattr(self, path, fh=None):
        if path == "/":
            return dict(st_mode=0o40755, st_nlink=2)
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return [".", ".."]

    def statfs(self, path):
        while not os.path.exists(self.release):
            time.sleep(0.05)
        return dict(f_bsize=4096, f_frsize=4096, f_blocks=2560, f_bfree=1280,
                    f_bavail=1024, f_files=1000, f_ffree=900, f_namemax=255)


if __name__ == "__main__":
    mountpoint, release = sys.argv[1], sys.argv[2]
    FUSE(HangingStatfs(release), mountpoint, foreground=True, nothreads=False,
         fsname="hangfs:/export")
