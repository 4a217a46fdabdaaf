"""The file ops (files.list/stat/read/write/delete), confined to the data dir (/mnt/data).

No path leaves it, no symbolic link is followed out of it, and writes are streamed to a temp file renamed into place.
"""

import errno
import os
import stat

from protocol import AgentError

DEFAULT_MAX_FILE_BYTES = 1 << 30
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def error_for(exc, path):
    """Maps an OSError from a file operation to the protocol's error codes."""
    code = exc.errno
    if code == errno.ENOENT:
        return AgentError("FileNotFound", f"'{path}' does not exist")
    if code == errno.ENOTDIR:
        return AgentError("NotADirectory", f"'{path}' or one of its parents is not a directory")
    if code in (errno.EISDIR, errno.ENOTEMPTY):
        return AgentError("NotAFile", f"'{path}' is a directory")
    if code == errno.EEXIST:
        return AgentError("AlreadyExists", f"'{path}' already exists")
    if code == errno.ELOOP:
        return AgentError("PathOutsideDataDir", f"'{path}' goes through a symbolic link that was changed")
    if code in (errno.ENAMETOOLONG, errno.EINVAL):
        return AgentError("BadRequest", f"'{path}' is not a valid path: {exc.strerror}")
    if code == errno.EFBIG:
        return AgentError("FileTooLarge", f"'{path}' is too large: {exc.strerror}")
    return AgentError("Internal", f"'{path}': {exc.strerror or exc}")


class Files:
    """File operations confined to the data dir: no `..`, parents resolved and checked, leaves not followed."""

    def __init__(self, data_dir, max_file_bytes=DEFAULT_MAX_FILE_BYTES):
        self.root = os.path.realpath(data_dir)
        self.max_file_bytes = max_file_bytes
        # Longest first, so that the most specific spelling of the data dir is the one removed.
        self.prefixes = sorted({"/mnt/data", data_dir.rstrip("/"), self.root}, key=len, reverse=True)

    def split(self, raw, allow_root=False):
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raise AgentError("BadRequest", "path must be a string")
        if "\0" in raw:
            raise AgentError("BadRequest", "path must not contain NUL characters")
        path = raw
        for prefix in self.prefixes:
            if path == prefix:
                path = ""
                break
            if path.startswith(prefix + "/"):
                path = path[len(prefix) + 1 :]
                break
        if path.startswith("/"):
            raise AgentError("PathOutsideDataDir", f"'{raw}' is outside /mnt/data")
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise AgentError("PathOutsideDataDir", f"'{raw}' must not contain '..'")
        if not parts and not allow_root:
            raise AgentError("BadRequest", "path must name a file under /mnt/data")
        return parts

    def open_dir(self, parts, create=False):
        """An fd for the directory `parts`, refusing anything that resolves outside the data dir."""
        shown = "/".join(parts)
        real = os.path.realpath(os.path.join(self.root, *parts))
        if real != self.root and not real.startswith(self.root + "/"):
            raise AgentError("PathOutsideDataDir", f"'{shown}' resolves outside /mnt/data")
        fd = os.open(self.root, DIR_FLAGS)
        try:
            # Walk the resolved path with O_NOFOLLOW: a symlink swapped in after realpath() is refused.
            for name in real[len(self.root) + 1 :].split("/") if real != self.root else ():
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise AgentError("FileNotFound", f"'{shown}' does not exist") from None
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd
        except OSError as exc:
            os.close(fd)
            raise error_for(exc, shown) from None
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def entry(name, directory, st):
        return {
            "name": name,
            "directory": directory,
            "type": "directory" if stat.S_ISDIR(st.st_mode) else "file",
            "sizeBytes": st.st_size,
            "modifiedAtMs": st.st_mtime_ns / 1e6,
        }

    def stat(self, raw):
        parts = self.split(raw)
        fd = self.open_dir(parts[:-1])
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            raise error_for(exc, "/".join(parts)) from None
        finally:
            os.close(fd)
        return self.entry(parts[-1], "/".join(parts[:-1]), st)

    def list(self, raw, recursive):
        parts = self.split(raw, allow_root=True)
        fd = self.open_dir(parts)
        entries = []
        stack = [(fd, "/".join(parts))]
        try:
            while stack:
                dir_fd, directory = stack.pop()
                try:
                    subdirs = []
                    with os.scandir(dir_fd) as it:
                        listed = sorted(it, key=lambda e: e.name)
                    for item in listed:
                        try:
                            st = item.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # deleted while listing
                        entries.append(self.entry(item.name, directory, st))
                        if recursive and stat.S_ISDIR(st.st_mode):
                            subdirs.append(item.name)
                    for name in reversed(subdirs):
                        try:
                            child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                        except OSError:
                            continue  # replaced by a file or symlink meanwhile: not followed
                        stack.append((child, f"{directory}/{name}" if directory else name))
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise error_for(exc, "/".join(parts)) from None
        finally:
            for dir_fd, _ in stack:
                os.close(dir_fd)
        return entries

    def open_regular(self, raw):
        """(fd, entry) of a regular file opened for reading; never follows a symlink in the last component."""
        parts = self.split(raw)
        shown = "/".join(parts)
        dir_fd = self.open_dir(parts[:-1])
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AgentError("NotAFile", f"'{shown}' is a symbolic link; links are not followed") from None
            raise error_for(exc, shown) from None
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise AgentError("NotAFile", f"'{shown}' is not a regular file")
        if st.st_size > self.max_file_bytes:
            os.close(fd)
            raise AgentError("FileTooLarge", f"'{shown}' is {st.st_size} bytes; the limit is {self.max_file_bytes}")
        return fd, self.entry(parts[-1], "/".join(parts[:-1]), st)

    def write(self, raw, overwrite, payload):
        """Streams the payload to a temp file next to the target, then renames it into place."""
        limit = self.max_file_bytes
        if payload.remaining > limit:
            raise AgentError("FileTooLarge", f"{payload.remaining} bytes is more than the limit of {limit}")
        parts = self.split(raw)
        shown = "/".join(parts)
        name = parts[-1]
        dir_fd = self.open_dir(parts[:-1], create=True)
        temp = None
        try:
            try:
                existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    raise AgentError("NotAFile", f"'{shown}' is a directory")
                if not overwrite:
                    raise AgentError("AlreadyExists", f"'{shown}' already exists and overwrite is false")
            temp = f".{name[:200]}.{os.urandom(6).hex()}.sp-tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                         dir_fd=dir_fd)
            try:
                for chunk in payload.chunks():
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            if overwrite:
                os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                os.unlink(temp, dir_fd=dir_fd)
            temp = None
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            return self.entry(name, "/".join(parts[:-1]), st)
        except OSError as exc:
            raise error_for(exc, shown) from None
        finally:
            if temp is not None:
                try:
                    os.unlink(temp, dir_fd=dir_fd)
                except OSError:
                    pass
            os.close(dir_fd)

    def delete(self, raw):
        parts = self.split(raw)
        shown = "/".join(parts)
        dir_fd = self.open_dir(parts[:-1])
        try:
            st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise AgentError("NotAFile", f"'{shown}' is a directory")
            os.unlink(parts[-1], dir_fd=dir_fd)
        except OSError as exc:
            raise error_for(exc, shown) from None
        finally:
            os.close(dir_fd)
