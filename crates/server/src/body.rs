//! Reading request bodies: after authorization, within the per-request limit and the
//! server-wide budget of body bytes in flight, hashed as they stream.
//!
//! Nothing reads a body before the request is authenticated and authorized (gRPC reads its
//! message after authentication, to learn which model it names, and authorizes before any
//! tensor is decoded). The bytes are reserved from the [`BodyBudget`] before they are read:
//! the declared `Content-Length` at once, or chunk by chunk for a body of unknown length.
//! Past the budget the request is refused with 503 (gRPC `RESOURCE_EXHAUSTED`); the rest of
//! the body is thrown away as it arrives (for at most 5 s), never held, so a client that
//! sends without waiting reads the answer instead of a reset. The reservation lasts as long
//! as the bytes do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::ApiError;
use crate::context::{BodyFacts, RequestContext};

/// The server-wide budget of request body bytes held in memory at once.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { limit, used: AtomicUsize::new(0) })
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The budget.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes reserved from a [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `bytes`, or `None` when the budget cannot hold them.
    pub fn new(budget: &Arc<BodyBudget>, bytes: usize) -> Option<Reservation> {
        budget.take(bytes).then(|| Reservation { budget: budget.clone(), bytes })
    }

    /// Reserves `more` bytes on top; false (and nothing reserved) past the budget.
    fn grow(&mut self, more: usize) -> bool {
        let ok = self.budget.take(more);
        if ok {
            self.bytes += more;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// What the audit record keeps of a body, and so what reading it must compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// No record will keep anything of it (security off, or the audit level `None`).
    Nothing,
    /// Its size and SHA-256.
    Digest,
    /// Its size, SHA-256 and the bytes (the payload levels).
    Payload,
}

/// A request body read whole, with the reservation that accounts for it.
#[derive(Debug)]
pub struct ReadBody {
    /// The bytes.
    pub bytes: Bytes,
    _reservation: Reservation,
}

/// The declared `Content-Length`, if any and well-formed.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Reads a request body of at most `limit` bytes (413 past it), reserving it from `budget`
/// first (503 when the budget cannot hold it), and recording in the context what the audit
/// record keeps of it (`keep`): its size and digest, hashed as it streams, and at the
/// payload levels the bytes.
pub(crate) async fn read(
    ctx: &RequestContext,
    budget: &Arc<BodyBudget>,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    keep: Keep,
) -> Result<ReadBody, ApiError> {
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // A declared length is reserved whole before a byte is read; otherwise the reservation
    // grows with every chunk.
    let upfront = declared.map_or(0, |n| n as usize);
    let Some(mut reservation) = Reservation::new(budget, upfront) else {
        discard(body, limit).await;
        return Err(ApiError::BodyBudgetExhausted);
    };
    let mut hasher = (keep != Keep::Nothing).then(Sha256::new);
    let mut buffer = BytesMut::with_capacity(upfront.min(limit));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|err| ApiError::BadRequest(format!("could not read the request body: {err}")))?;
        let Ok(chunk) = frame.into_data() else { continue };
        let total = buffer.len() + chunk.len();
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        if total > reservation.bytes && !reservation.grow(total - reservation.bytes) {
            drop(buffer);
            discard(body, limit - total).await;
            return Err(ApiError::BodyBudgetExhausted);
        }
        if let Some(hasher) = &mut hasher {
            hasher.update(&chunk);
        }
        buffer.extend_from_slice(&chunk);
    }
    let bytes = buffer.freeze();
    if let Some(hasher) = hasher {
        ctx.set_body(BodyFacts {
            bytes: bytes.len() as u64,
            sha256: palisade_core::hex::to_hex(&hasher.finalize()),
        });
    }
    if keep == Keep::Payload {
        ctx.capture_body(&bytes);
    }
    Ok(ReadBody { bytes, _reservation: reservation })
}

/// How long a refused body is read and thrown away at most.
const DISCARD_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and throws away what is left of a body the budget refused (at most `limit` more
/// bytes, for at most 5 s), holding one chunk at a time. A client that sends its body
/// without waiting for an answer then reads the 503 instead of a connection reset; the
/// memory the budget protects is never used.
async fn discard(mut body: Body, limit: usize) {
    let mut left = limit;
    let _ = tokio::time::timeout(DISCARD_FOR, async {
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(chunk) = frame.into_data() else { continue };
            match left.checked_sub(chunk.len()) {
                Some(rest) => left = rest,
                None => return,
            }
        }
    })
    .await;
}

/// Records the size and SHA-256 of a body already read whole (a gRPC message, whose model,
/// and so whose audit level, is known only once it is read), and keeps the bytes at the
/// payload levels.
pub(crate) fn keep_read(ctx: &RequestContext, bytes: &Bytes, keep: Keep) {
    if keep == Keep::Nothing {
        return;
    }
    let sha256 = palisade_core::hex::to_hex(&Sha256::digest(bytes));
    ctx.set_body(BodyFacts { bytes: bytes.len() as u64, sha256 });
    if keep == Keep::Payload {
        ctx.capture_body(bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let budget = BodyBudget::new(100);
        let a = Reservation::new(&budget, 60).unwrap();
        assert!(Reservation::new(&budget, 41).is_none());
        let mut b = Reservation::new(&budget, 40).unwrap();
        assert_eq!(budget.in_use(), 100);
        assert!(!b.grow(1));
        drop(a);
        assert!(b.grow(60));
        assert_eq!(budget.in_use(), 100);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }
}
