//! The host's side: rtnetlink, ioctls, bpffs and namespaces.

pub(crate) mod netlink;
pub(crate) mod sys;
pub(crate) mod tap;

pub use netlink::Netlink;
pub use sys::{netns_ino, require_root};
