//! Requests outside the rooms, answered on the core that accepted them: `/metrics`, static
//! files (`--serve DIR`), the server-level `on_fetch`, the single-page-app index, the demo page,
//! and 404. `runtime::http_conn` calls [`answer`] for every request whose target is not a room
//! route, and streams a [`FileAnswer`] with [`send_file`].
//!
//! Order (PartyKit's edge order, `docs/static-files.md`, with partyring's own pages):
//! 1. `/metrics`;
//! 2. a file under the served root, for `GET`/`HEAD` of any path not under `/parties`
//!    (`/` and `/dir/` mean `index.html`; `/dir` for a directory is redirected to `/dir/`);
//! 3. `on_fetch`, if set: its `Some` answers, `None` passes;
//! 4. with `--serve-spa`, `index.html` for a `GET`/`HEAD` whose path could name a file;
//! 5. the demo page (`/`, `/_demo/partysocket.js`);
//! 6. the root's `404.html` with status 404 (as PartyKit), else `404 Not found`, or the status
//!    of a path refused by `http::static_files` (400 for `..` and friends).
//!
//! Safety of the mapping: `http::static_files::map_target` yields plain relative names only;
//! here the joined path is resolved (`canonicalize`: symlinks and all) and served only if the
//! result is still under the root (resolved at start) and has no dot-named component below it,
//! so a symlink cannot lead outside the root or to a dotfile. The file served is the resolved
//! path. The root's contents are the operator's: a race that swaps a checked component for a
//! symlink needs write access to the root, which is outside what a client can do.
//!
//! Blocking: resolving, `stat` and `open` are plain system calls on the core thread (metadata
//! is normally cached; a cold disk stalls this core's other connections for the seek). The
//! body is read in [`CHUNK`]-sized pieces through monoio (io_uring reads; `pread` on the epoll
//! driver) into one buffer per transfer and sent before the next read, so a file of any size
//! costs one chunk of memory and the socket's pace sets the disk's.

use std::{
    borrow::Cow,
    fs::File,
    io,
    os::unix::fs::OpenOptionsExt,
    path::{Component, Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use monoio::net::TcpStream;

use crate::{
    config::Serve,
    http::{
        parse::header_value,
        static_files::{self, Mapped, INDEX, NOT_FOUND_PAGE},
        Method, Response,
    },
    party::{Reply, Request},
    runtime::core::Core,
};

/// Bytes read from a file and sent per step.
pub const CHUNK: usize = 64 * 1024;

/// What answers a request outside the rooms.
pub enum Answer {
    Reply(Reply),
    /// A file: `head` is the status and headers (no body), `len` bytes of `file` follow.
    File(FileAnswer),
}

impl From<Reply> for Answer {
    fn from(r: Reply) -> Self {
        Answer::Reply(r)
    }
}

/// An open file to send after its head.
pub struct FileAnswer {
    /// Status (200, or 404 for `404.html`) and headers, `Content-Type` among them; its
    /// `content_type` is empty and its body unused.
    pub head: Response,
    /// The `Content-Length`: the size when it was opened.
    pub len: u64,
    pub file: File,
}

/// Answers a request whose target is not a room route (see the module note for the order).
pub fn answer(core: &Core, method: Method, target: &str, head: &[u8], body: &[u8]) -> Answer {
    if let Some(reply) = super::metrics::response(core, method, target) {
        return reply.into();
    }
    let site = core.config.serve.as_ref();
    let readable = matches!(method, Method::Get | Method::Head);
    let path = target.split(['?', '#']).next().unwrap_or("");
    let party_path = path == "/parties" || path.starts_with("/parties/");
    let mut refused = None;
    let mut spa_ok = false;
    if let (Some(site), true, false) = (site, readable, party_path) {
        match static_files::map_target(target) {
            Ok(mapped) => {
                spa_ok = true;
                if let Some(answer) = lookup(site, &mapped, path, head, 200) {
                    return answer;
                }
            }
            Err(r) => {
                if r.status() != 404 {
                    tracing::info!(
                        core = core.id,
                        target,
                        reason = r.reason(),
                        "static path refused"
                    );
                }
                refused = Some(r);
            }
        }
    }
    let req = Request::from_head(method, target, head, body);
    if let Some(reply) = core
        .parties
        .fetch(&req, &crate::room::Context::new(core.host.clone()))
    {
        return reply.into();
    }
    if let Some(site) = site.filter(|s| spa_ok && s.spa) {
        let index = Mapped {
            path: PathBuf::from(INDEX),
            dir: false,
        };
        if let Some(answer) = lookup(site, &index, path, head, 200) {
            return answer;
        }
    }
    if let Some(resp) = crate::demo::response(method, target) {
        return Reply::Now(resp).into();
    }
    if let Some(r) = refused.filter(|r| r.status() != 404) {
        return Reply::Now(Response::text(r.status(), r.reason())).into();
    }
    if let (Some(site), true, false) = (site, readable, party_path) {
        let page = Mapped {
            path: PathBuf::from(NOT_FOUND_PAGE),
            dir: false,
        };
        if let Some(answer) = lookup(site, &page, path, head, 404) {
            return answer;
        }
    }
    Reply::Now(Response::text(404, "Not found")).into()
}

/// The file `mapped` names under the root, as an answer with `status`; `None` if there is no
/// such regular file inside the root. A directory named without its `/` is redirected.
fn lookup(site: &Serve, mapped: &Mapped, path: &str, head: &[u8], status: u16) -> Option<Answer> {
    let mut want = site.dir.join(&mapped.path);
    if mapped.dir {
        want.push(INDEX);
    }
    let real = resolve_inside(&site.dir, &want)?;
    let meta = std::fs::metadata(&real).ok()?;
    if meta.is_dir() {
        // `/docs` for a directory: relative links in its index need `/docs/`.
        let location = format!("{path}/");
        return Some(
            Reply::Now(Response::text(301, "Moved permanently").header("Location", location))
                .into(),
        );
    }
    // Regular files only: opening a FIFO would block this core until a writer came.
    if !meta.is_file() {
        return None;
    }
    // Between the checks above and this open the file could be swapped (by someone with write
    // access to the root): O_NOFOLLOW refuses a symlink put in its place, O_NONBLOCK keeps a
    // FIFO put there from blocking the core, and the opened file is checked again below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .ok()?;
    // The opened file's own metadata: the size sent is the size of what is open.
    let meta = file.metadata().ok().filter(|m| m.is_file())?;
    // A regular file: reads go through the ring, and an io_uring read of an O_NONBLOCK file
    // ends with EAGAIN on a page-cache miss instead of waiting for the disk.
    clear_nonblock(&file).ok()?;
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = static_files::etag(len, modified);
    let mut headers: Vec<(Cow<'static, str>, String)> = vec![
        ("ETag".into(), etag.clone()),
        (
            "Last-Modified".into(),
            static_files::last_modified(modified),
        ),
        (
            "Cache-Control".into(),
            static_files::cache_control(site.browser_ttl),
        ),
        ("X-Content-Type-Options".into(), "nosniff".to_owned()),
    ];
    if status == 200
        && static_files::not_modified(
            header_value(head, "if-none-match"),
            header_value(head, "if-modified-since"),
            &etag,
            modified,
        )
    {
        return Some(
            Reply::Now(Response {
                status: 304,
                content_type: "",
                headers,
                body: Vec::new(),
            })
            .into(),
        );
    }
    headers.insert(
        0,
        (
            "Content-Type".into(),
            // By the name asked for (a symlink's target may be named otherwise).
            static_files::content_type(&want).into_owned(),
        ),
    );
    Some(Answer::File(FileAnswer {
        head: Response {
            status,
            content_type: "",
            headers,
            body: Vec::new(),
        },
        len,
        file,
    }))
}

/// Clears `O_NONBLOCK` on an open file.
fn clear_nonblock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is the open descriptor `file` owns for this whole call; F_GETFL and F_SETFL
    // only read and set its status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `path` resolved (symlinks, `..`), if it exists and the result is under `root` (resolved)
/// with no dot-named component below it; `None` otherwise (logged when a symlink leads out).
fn resolve_inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    let Ok(below) = real.strip_prefix(root) else {
        tracing::info!(path = %path.display(), resolved = %real.display(), "static file resolves outside the served root: 404");
        return None;
    };
    let hidden = below.components().any(|c| match c {
        Component::Normal(name) => name.as_encoded_bytes().first() == Some(&b'.'),
        _ => true,
    });
    (!hidden).then_some(real)
}

/// Sends `len` bytes of `file` (its head already sent), [`CHUNK`] at a time; each write waits
/// at most `timeout` for room in the socket.
///
/// # Errors
/// A read or send failure, a send that timed out, or a file that shrank below `len` (the
/// promised `Content-Length` cannot be kept: the caller must close the connection).
pub async fn send_file(
    core: &Core,
    stream: &TcpStream,
    file: File,
    len: u64,
    timeout: Duration,
) -> io::Result<()> {
    let file = monoio::fs::File::from_std(file)?;
    let mut buf = Vec::with_capacity(CHUNK);
    let mut pos = 0u64;
    while pos < len {
        buf.clear();
        let (res, back) = file.read_at(buf, pos).await;
        buf = back;
        let n = res?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        let take = n.min(usize::try_from(len - pos).unwrap_or(usize::MAX));
        super::http_conn::flush_all(stream, &buf[..take], timeout, &core.metrics).await?;
        pos += take as u64;
    }
    Ok(())
}
