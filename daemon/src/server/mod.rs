//! How clients reach kited: the Unix socket (`ipc`) and HTTP (`http`), on one accept loop with a
//! connection budget drawn from the file descriptors the process may open.

pub(crate) mod accept;
pub(crate) mod fd_budget;
pub(crate) mod http;
pub(crate) mod ipc;
