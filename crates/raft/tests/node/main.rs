//! `RaftNode` in one process: nodes over their own engines in temp dirs, talking gRPC over
//! loopback (`harness`). The guarded bootstrap (`bootstrap`), the membership refusals
//! (`membership`) and what a node reports (`status`), without starting server processes.

mod bootstrap;
mod harness;
mod membership;
mod status;
