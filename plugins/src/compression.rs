//! Compression transfer filters: gzip and zstd.

use bytes::Bytes;
use drpc::plugin::HandledCall;
use drpc::proto::Message;
use drpc::{Plugin, Session, Status};
use std::io::{self, Read, Write};

/// A transfer filter, with its id on the wire (docs/PROTOCOL.md section 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// gzip (RFC 1952), id 1.
    #[cfg(feature = "gzip")]
    Gzip,
    /// Zstandard (RFC 8878), id 2.
    #[cfg(feature = "zstd")]
    Zstd,
}

impl Filter {
    /// The id recorded in a message's filter list.
    pub fn id(self) -> u8 {
        match self {
            #[cfg(feature = "gzip")]
            Self::Gzip => 1,
            #[cfg(feature = "zstd")]
            Self::Zstd => 2,
        }
    }

    /// The filter with `id`, if this build knows it.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            #[cfg(feature = "gzip")]
            1 => Some(Self::Gzip),
            #[cfg(feature = "zstd")]
            2 => Some(Self::Zstd),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "gzip")]
            Self::Gzip => "gzip",
            #[cfg(feature = "zstd")]
            Self::Zstd => "zstd",
        }
    }

    fn compress(self, body: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            #[cfg(feature = "gzip")]
            Self::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 2),
                    flate2::Compression::fast(),
                );
                enc.write_all(body)?;
                enc.finish()
            }
            #[cfg(feature = "zstd")]
            Self::Zstd => zstd::bulk::compress(body, 3),
        }
    }

    /// Reverses the filter, reading at most `limit` bytes of output so a
    /// small body cannot unpack into an unbounded one.
    fn decompress(self, body: &[u8], limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let cap = limit as u64 + 1;
        match self {
            #[cfg(feature = "gzip")]
            Self::Gzip => {
                flate2::read::GzDecoder::new(body)
                    .take(cap)
                    .read_to_end(&mut out)?;
            }
            #[cfg(feature = "zstd")]
            Self::Zstd => {
                zstd::stream::read::Decoder::new(body)?
                    .take(cap)
                    .read_to_end(&mut out)?;
            }
        }
        if out.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it unpacks to more than the frame limit of {limit} bytes"),
            ));
        }
        Ok(out)
    }
}

/// Compresses outgoing bodies of at least a threshold size with one
/// [`Filter`], recording it in the message so the receiver reverses it; and
/// reverses the filters of incoming messages. Both peers need the plugin
/// (a peer without it answers a filtered call with 400).
///
/// A reply uses the filters of the call it answers (when it is over the
/// threshold too), so a server never sends a filter its caller did not use.
/// A body that would not get smaller is sent as it is. A corrupt body, or
/// one that would unpack past the endpoint's frame limit, is answered with
/// 400 and never crashes anything.
///
/// ```
/// use drpc_plugins::{Compression, Filter};
///
/// let endpoint = drpc::Endpoint::builder()
///     .plugin(Compression::new(Filter::Zstd).threshold(4096))
///     .build()
///     .unwrap();
/// # drop(endpoint);
/// ```
#[derive(Debug, Clone)]
pub struct Compression {
    filter: Filter,
    threshold: usize,
}

impl Compression {
    /// Compresses with `filter` bodies of at least 1 KiB: smaller ones
    /// rarely shrink enough to pay for the work.
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            threshold: 1024,
        }
    }

    /// Leaves bodies smaller than `bytes` uncompressed.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Applies `filters` in order, unless the body is under the threshold
    /// or would not shrink.
    fn apply(&self, msg: &mut Message, filters: &[Filter]) -> Result<(), Status> {
        if filters.is_empty() || msg.body.len() < self.threshold || !msg.header.filters.is_empty() {
            return Ok(());
        }
        let mut body = msg.body.to_vec();
        for f in filters {
            body = f
                .compress(&body)
                .map_err(|e| Status::internal(format!("{} compression failed: {e}", f.name())))?;
        }
        if body.len() < msg.body.len() {
            msg.body = Bytes::from(body);
            msg.header.filters = filters.iter().map(|f| f.id()).collect::<Vec<_>>().into();
        }
        Ok(())
    }

    /// Reverses the filters it knows, last applied first. An unknown one
    /// stops it, leaving the rest for the endpoint to refuse with 400.
    fn reverse(session: &Session, msg: &mut Message) -> Result<(), Status> {
        if msg.header.filters.is_empty() {
            return Ok(());
        }
        let limit = session.endpoint().config().max_frame_len;
        let mut ids = msg.header.filters.to_vec();
        let mut body: Option<Vec<u8>> = None;
        while let Some(f) = ids.last().and_then(|id| Filter::from_id(*id)) {
            let input = body.as_deref().unwrap_or(&msg.body);
            body = Some(f.decompress(input, limit).map_err(|e| {
                Status::bad_message(format!("the body does not unpack with {}: {e}", f.name()))
            })?);
            ids.pop();
        }
        if let Some(body) = body {
            msg.body = Bytes::from(body);
            msg.header.filters = ids.into();
        }
        Ok(())
    }
}

/// A handled call's filters, kept with the call so its reply uses them.
struct ReplyFilters {
    plugin: Compression,
    filters: Vec<Filter>,
}

impl HandledCall for ReplyFilters {
    fn before_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        self.plugin.apply(reply, &self.filters)
    }
}

impl Plugin for Compression {
    fn name(&self) -> &str {
        "compression"
    }

    fn before_write_call(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        self.apply(msg, &[self.filter])
    }

    fn before_write_push(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        self.apply(msg, &[self.filter])
    }

    fn handle_call(
        &self,
        _: &Session,
        msg: &Message,
    ) -> Result<Option<Box<dyn HandledCall>>, Status> {
        // The call's filters as it arrived, before the header hook below
        // reverses them: its reply gets the same ones.
        if msg.header.filters.is_empty() {
            return Ok(None);
        }
        let known: Option<Vec<Filter>> = msg
            .header
            .filters
            .iter()
            .map(|id| Filter::from_id(*id))
            .collect();
        Ok(known.map(|filters| {
            Box::new(ReplyFilters {
                plugin: self.clone(),
                filters,
            }) as Box<dyn HandledCall>
        }))
    }

    fn after_read_call_header(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Self::reverse(session, msg)
    }

    fn after_read_reply_header(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Self::reverse(session, msg)
    }

    fn after_read_push_header(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Self::reverse(session, msg)
    }
}
