//! Global functions: the verifier checks each once, on its own, with its
//! arguments unknown, and its callers see one unknown number come back.
//! Inlined code is walked again for every state a caller reaches it in
//! (every path index, every optional GRE field...), and that product is
//! what once took the transmit program past the verifier's million
//! instructions. Each piece below stays a few thousand on its own.
//!
//! A global function takes scalars or the program context and returns a
//! scalar: a `Result<i32, DropReason>` travels as an `i64` (a verdict, or
//! a negative drop reason).

use gre_common::DropReason;

/// A result as a global function returns it.
#[inline(always)]
pub fn encode(r: Result<i32, DropReason>) -> i64 {
    match r {
        Ok(v) => v as i64,
        Err(reason) => -(reason as i64) - 1,
    }
}

/// A global function's result again.
#[inline(always)]
pub fn decode(v: i64) -> Result<i32, DropReason> {
    if v >= 0 {
        return Ok(v as i32);
    }
    Err(DropReason::from_repr((-(v + 1)) as u32).unwrap_or(DropReason::HelperFailed))
}
