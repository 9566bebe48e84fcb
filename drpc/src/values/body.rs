//! Bodies in and out of codecs, with their failures as statuses.

use super::Status;
use bytes::Bytes;
use drpc_codec::{CodecId, Codecs};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The furthest ahead any deadline is set: a year, so an effectively
/// unlimited timeout (`Duration::MAX`) cannot overflow the clock.
pub(crate) const MAX_DEADLINE_AHEAD: Duration = Duration::from_secs(365 * 24 * 3600);

/// Decodes a received body (its byte strings as slices of it, see
/// [`drpc_codec::Blob`]); a body that does not decode is a 400 that names
/// `what` and the type expected.
pub(crate) fn decode_body<T: DeserializeOwned>(
    codecs: &Codecs,
    codec: CodecId,
    body: &Bytes,
    what: &str,
) -> Result<T, Status> {
    codecs.decode_shared(codec, body).map_err(|e| {
        Status::bad_message(format!(
            "cannot decode the {} body of {what} as {}: {e}",
            codecs.name(codec),
            std::any::type_name::<T>()
        ))
        .with_cause(e)
    })
}
