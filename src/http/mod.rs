//! HTTP/1.1 protocol logic with no I/O: request parsing ([`request`]), chunked request bodies
//! ([`chunked`]), content-coding negotiation ([`coding`]), status codes and response-head rendering ([`response`]), and the per-thread
//! cached `Date` value ([`date`]).
//!
//! Engines hand this module bytes and get back plain values; nothing here knows about sockets.

pub mod chunked;
pub mod coding;
pub mod date;
pub mod request;
pub mod response;

pub use request::{Method, ParseError, Request, Version, parse};
pub use response::{Head, Status};
