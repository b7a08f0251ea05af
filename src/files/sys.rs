//! The blocking file-system calls that the epoll engine makes on its worker thread and the
//! directory lister makes on the blocking pool: `openat2` beneath the root, `statx`, and the
//! exact `pread` of a file's bytes. The io_uring engine submits the same operations to its ring
//! instead.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use super::Meta;

/// `openat2(dirfd, rel)` with `flags` and [`super::RESOLVE`]: the kernel refuses any resolution
/// that leaves `dirfd`, symlinks included.
pub fn openat2(dirfd: RawFd, rel: &CStr, flags: u64) -> io::Result<OwnedFd> {
    // SAFETY: open_how is a plain C struct for which all-zero bytes are a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags;
    how.resolve = super::RESOLVE;
    // SAFETY: openat2 reads `rel` and `how`, both live for the call; a non-negative result is a
    // new descriptor that we own from here on.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above; the descriptor is fresh and unowned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `statx(dirfd, path, flags)` for the fields of [`super::STATX_MASK`].
pub fn statx(dirfd: RawFd, path: &CStr, flags: i32) -> io::Result<Meta> {
    // SAFETY: statx is a plain C struct for which all-zero bytes are a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid, writable statx buffer.
    if unsafe { libc::statx(dirfd, path.as_ptr(), flags, super::STATX_MASK, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Meta::from_statx(&st))
}

/// Opens `rel` with [`super::OPEN_FLAGS`] beneath the directory `root` and stats the open
/// descriptor: a cache miss's open, as one blocking step.
pub fn open_file(root: RawFd, rel: &CStr) -> io::Result<(File, Meta)> {
    let file = File::from(openat2(root, rel, super::OPEN_FLAGS)?);
    let meta = statx(file.as_raw_fd(), c"", libc::AT_EMPTY_PATH)?;
    Ok((file, meta))
}

/// Reads exactly `len` bytes of `file` from its start (for the cache).
pub fn read_whole(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    let mut buf = vec![0; len];
    read_exact_at(file, &mut buf, 0)?;
    Ok(buf)
}

/// Fills `buf` from `file` at `offset` (pread), failing with [`super::shrank`] when the file is
/// shorter than promised.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            super::shrank()
        } else {
            e
        }
    })
}
