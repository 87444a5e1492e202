//! `dolmen-chaos`: Jepsen-style evidence that Dolmen never loses an acknowledged write and never
//! returns a non-linearizable result. See `docs/RELIABILITY.md`.

pub mod check;
pub mod history;
