//! The process's signals: which ones the server takes, and what each means.
//!
//! Every signal whose default action would end the process and that can come from outside is
//! blocked in all threads before the first one starts, and waited for by the main thread
//! ([`Signals::wait`]), so none of them kills the server mid-response, and none goes unnoticed:
//! each one is either acted upon or logged as ignored. SIGINT, SIGTERM and SIGQUIT stop
//! gracefully (SIGQUIT is nginx's graceful stop); SIGHUP reloads the configuration; SIGUSR1
//! reopens the access log (log rotation). SIGPIPE is not
//! here: the Rust runtime ignores it before `main`, so a write to a closed socket returns EPIPE.
//! Faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS) and SIGABRT keep their default
//! action: a server in that state must stop.

use std::io;
use std::mem::MaybeUninit;

/// What the main thread does with a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop accepting, finish the responses in flight, exit.
    Stop,
    /// Read the configuration again and apply what can change live.
    Reload,
    /// Reopen the access log file (after logrotate renamed it).
    ReopenLog,
    /// Log it (with this explanation, when there is one) and go on serving.
    Ignore(Option<&'static str>),
}

/// The signals that are not errors of the process itself and whose default action ends it.
const STANDARD: [libc::c_int; 14] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGSTKFLT,
    libc::SIGXCPU,
    libc::SIGXFSZ,
];

/// What `sig` means to the server.
pub fn action(sig: libc::c_int) -> Action {
    match sig {
        libc::SIGINT | libc::SIGTERM | libc::SIGQUIT => Action::Stop,
        libc::SIGHUP => Action::Reload,
        libc::SIGUSR1 => Action::ReopenLog,
        libc::SIGUSR2 => Action::Ignore(Some("uring-httpd has no binary upgrade")),
        _ => Action::Ignore(None),
    }
}

/// The signal's name: `SIGHUP`, or `SIGRTMIN+3` for a real-time one.
pub fn name(sig: libc::c_int) -> String {
    let rt = (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig);
    if rt {
        return format!("SIGRTMIN+{}", sig - libc::SIGRTMIN());
    }
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

/// The blocked set, waited for by [`Signals::wait`].
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks every signal the server takes (the standard ones above and the real-time ones
    /// glibc leaves to programs) in the calling thread. Call it before any other thread starts,
    /// so that every thread inherits the mask and only [`Signals::wait`] receives them.
    pub fn block() -> io::Result<Signals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; it is only read after that.
        let mut set = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            set.assume_init()
        };
        let realtime = libc::SIGRTMIN()..=libc::SIGRTMAX();
        for sig in STANDARD.into_iter().chain(realtime) {
            // SAFETY: `set` is an initialised sigset_t and `sig` a valid signal number.
            if unsafe { libc::sigaddset(&mut set, sig) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: pthread_sigmask reads `set` and writes no old mask (null).
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(Signals { set })
    }

    /// Waits for the next of the blocked signals sent to the process.
    pub fn wait(&self) -> io::Result<libc::c_int> {
        loop {
            // SAFETY: `set` is initialised; a null info pointer asks for the number only.
            let sig = unsafe { libc::sigwaitinfo(&self.set, std::ptr::null_mut()) };
            if sig >= 0 {
                return Ok(sig);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_actions() {
        assert_eq!(name(libc::SIGHUP), "SIGHUP");
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(action(libc::SIGQUIT), Action::Stop);
        assert_eq!(action(libc::SIGHUP), Action::Reload);
        assert_eq!(action(libc::SIGUSR1), Action::ReopenLog);
        assert_eq!(action(libc::SIGALRM), Action::Ignore(None));
        assert!(matches!(action(libc::SIGUSR2), Action::Ignore(Some(_))));
    }
}
