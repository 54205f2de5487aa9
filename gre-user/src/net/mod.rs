//! The host's side: rtnetlink, ioctls, bpffs and namespaces.

pub mod netlink;
pub mod sys;
