//! The metrics textfile, written as root into a directory other users may write to
//! (node_exporter's textfile directory often belongs to the exporter's user).
//!
//! Everything goes through one descriptor of the directory, so a path swapped under us
//! changes nothing: the temporary file is created with `O_CREAT|O_EXCL|O_NOFOLLOW`
//! (open(2): with O_EXCL an existing name of any kind, a symlink or a FIFO included,
//! fails with EEXIST instead of being opened), under a name nobody can predict, with
//! its final mode set on the descriptor, then renamed over the target (rename(2) is
//! atomic within a directory and replaces a name, never what a symlink points to).
//! A target that is not a regular file, and a directory every user may write without
//! the sticky bit, are refused: offloadd does not write where it cannot tell who
//! placed what.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the textfile was not written; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TextfileError {
    #[error("{path}: {why}")]
    Refused { path: String, why: String },
    #[error("{path}: {op}: {source}{}", hint(.source))]
    Io {
        path: String,
        op: &'static str,
        source: io::Error,
    },
}

/// The next step for an error of the system, naming the sandbox where one is the cause.
fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EROFS) => "; the file system is read-only here: under systemd the unit's ProtectSystem=strict sandbox allows only its ReadWritePaths (add the textfile's directory: systemctl edit offloadd, [Service] ReadWritePaths=DIR)",
        Some(libc::EACCES | libc::EPERM) => "; offloadd runs without CAP_DAC_OVERRIDE: make the directory writable by root (its owner or mode), or use a root-owned directory",
        Some(libc::ENOENT) => "; create the directory (node_exporter's --collector.textfile.directory) or change [metrics] textfile",
        _ => "",
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> TextfileError + 'a {
    move |source| TextfileError::Io {
        path: path.display().to_string(),
        op,
        source,
    }
}

fn refused(path: &Path, why: impl Into<String>) -> TextfileError {
    TextfileError::Refused {
        path: path.display().to_string(),
        why: why.into(),
    }
}

/// Tries before giving up on names somebody keeps taking.
const TRIES: u32 = 8;
static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temporary name no one can guess ahead: the pid, a counter, and the clock's
/// nanoseconds mixed. It starts with a dot and does not end in `.prom`, so no collector
/// reads it.
fn temp_name(target: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mix = nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
        ^ seq.wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ u64::from(std::process::id());
    format!(".{target}.{mix:016x}.tmp")
}

/// What may be at the target's name before we replace it: nothing, or a regular file.
pub fn check_target(path: &Path) -> Result<(), TextfileError> {
    let dir = open_dir(path)?;
    target_kind(&dir, path)
}

/// Opens the target's directory and refuses one that others may fill with traps.
fn open_dir(path: &Path) -> Result<File, TextfileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| refused(path, "no directory"))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io_err(dir, "opening the directory"))?;
    let meta = f.metadata().map_err(io_err(dir, "reading the directory"))?;
    let mode = meta.mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(refused(
            dir,
            format!("every user may write to this directory (mode {:o}) and it has no sticky bit, so any of them could swap the metrics file; use a directory only root or the exporter's user can write (chmod o-w), or set the sticky bit (chmod +t)", mode & 0o7777),
        ));
    }
    Ok(f)
}

fn target_kind(dir: &File, path: &Path) -> Result<(), TextfileError> {
    let name = c_name(path)?;
    // SAFETY: an all-zero `stat` is a valid value for fstatat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: dir is an open descriptor, name a NUL-terminated string, st a valid
    // out-pointer; AT_SYMLINK_NOFOLLOW describes a symlink itself.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(()),
            _ => Err(io_err(path, "looking at the file")(e)),
        };
    }
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => return Ok(()),
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        _ => "a device node",
    };
    Err(refused(
        path,
        format!("is {kind}, not a regular file: offloadd replaces only a regular file it wrote; remove it or change [metrics] textfile"),
    ))
}

fn c_name(path: &Path) -> Result<CString, TextfileError> {
    let name = path
        .file_name()
        .ok_or_else(|| refused(path, "no file name"))?;
    CString::new(name.as_bytes()).map_err(|_| refused(path, "a NUL byte in the name"))
}

/// Writes `bytes` to `path` as described above: readers see the old file or the new
/// one, never half of one, and nothing outside `path` is ever written.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TextfileError> {
    let dir = open_dir(path)?;
    target_kind(&dir, path)?;
    let target = c_name(path)?;
    let shown = path.file_name().unwrap_or_default().to_string_lossy();
    let mut last = None;
    for _ in 0..TRIES {
        let tmp_name = temp_name(&shown);
        let tmp = CString::new(tmp_name.as_bytes()).expect("no NUL in a formatted name");
        // SAFETY: dir is open, tmp NUL-terminated; O_CREAT|O_EXCL never follows or opens
        // an existing name, O_NONBLOCK keeps even a raced FIFO from blocking.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC
                    | libc::O_NONBLOCK,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                last = Some(e);
                continue;
            }
            return Err(io_err(path, "creating the temporary file")(e));
        }
        // SAFETY: fd was just returned by openat and is owned by nobody else.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let written = (|| {
            // The umask (UMask=0077 in the unit) narrowed the mode of creation; the
            // collector runs as another user and must read the file.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            file.write_all(bytes)?;
            // SAFETY: both names are NUL-terminated and relative to the open dir.
            let rc = unsafe {
                libc::renameat(
                    dir.as_raw_fd(),
                    tmp.as_ptr(),
                    dir.as_raw_fd(),
                    target.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })();
        if let Err(e) = written {
            // SAFETY: as above; removes only the name we created.
            unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
            return Err(io_err(path, "writing")(e));
        }
        return Ok(());
    }
    Err(refused(
        path,
        format!(
            "another program keeps creating the temporary names offloadd picks ({}); find who writes into that directory",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "offloadd-textfile-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaced_whole_with_mode_0644_and_no_temporary_left() {
        let dir = scratch("ok");
        let p = dir.join("offloadd.prom");
        write_atomically(&p, b"offloadd_up 1\n").unwrap();
        write_atomically(&p, b"offloadd_up 0\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "offloadd_up 0\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(names(&dir), ["offloadd.prom"]);
        let e = write_atomically(&dir.join("none/offloadd.prom"), b"x").unwrap_err();
        assert!(e.to_string().contains("create the directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_or_fifo_at_the_target_is_refused_and_its_file_untouched() {
        let dir = scratch("trap");
        let victim = dir.join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = dir.join("offloadd.prom");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let e = write_atomically(&p, b"offloadd_up 1\n").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(&p).unwrap();
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = write_atomically(&p, b"offloadd_up 1\n").unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        assert_eq!(
            std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_world_writable_directory_needs_the_sticky_bit() {
        let dir = scratch("open");
        let p = dir.join("offloadd.prom");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = write_atomically(&p, b"x").unwrap_err();
        assert!(e.to_string().contains("sticky"), "{e}");
        assert!(check_target(&p).is_err());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        write_atomically(&p, b"x").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_differ_each_time() {
        let a = temp_name("offloadd.prom");
        let b = temp_name("offloadd.prom");
        assert_ne!(a, b);
        assert!(
            a.starts_with(".offloadd.prom.") && a.ends_with(".tmp"),
            "{a}"
        );
    }
}
