//! The crate's one error type: what was asked, what went wrong, and (for bad input) what is
//! accepted.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The input cannot be applied; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The kernel holds something in the way that is not ours to remove; nothing was changed.
    #[error("{0}")]
    Conflict(String),
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// A system call failed (opening a namespace, a socket).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A step failed after others had been applied, and undoing those failed too.
    #[error("{error}; undoing what was done failed too: {undo}")]
    UndoFailed {
        error: Box<OverlayError>,
        undo: String,
    },
}

impl OverlayError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }

    pub(crate) fn conflict(msg: impl Into<String>) -> Self {
        Self::Conflict(msg.into())
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    pub(crate) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Self {
        let what = what.into();
        move |source| Self::Netlink { what, source }
    }

    /// The kernel said the interface does not exist (ENODEV): a link that went away by itself,
    /// as a stopped container's veth does when the kernel tears its namespace down.
    pub(crate) fn is_no_such_device(&self) -> bool {
        matches!(self, Self::Netlink { source: rtnetlink::Error::NetlinkError(m), .. }
            if m.raw_code() == -libc::ENODEV)
    }
}
