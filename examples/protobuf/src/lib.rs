//! A typed drpc service whose bodies are protobuf messages from
//! `proto/math.proto`.
//!
//! ```text
//! cargo run -p drpc-example-protobuf
//! ```
//!
//! prost-build generates `AddRequest` and `AddReply` at build time; the
//! service wraps them in [`Protobuf`], and a client that asks for
//! [`CodecId::PROTOBUF`] sends each as its protobuf bytes, exactly what a
//! gRPC or any other protobuf peer would read.

use drpc::codec::Protobuf;
use drpc::Status;

/// The messages generated from `proto/math.proto`.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/math.rs"));
}

/// The service: `/math/add`, protobuf in and out.
#[drpc::service(prefix = "/math")]
pub trait Math {
    /// Adds two numbers.
    async fn add(&self, req: Protobuf<pb::AddRequest>) -> Result<Protobuf<pb::AddReply>, Status>;
}

/// The implementation.
#[derive(Clone)]
pub struct Calculator;

impl Math for Calculator {
    async fn add(&self, req: Protobuf<pb::AddRequest>) -> Result<Protobuf<pb::AddReply>, Status> {
        let pb::AddRequest { a, b } = req.0;
        let sum = a
            .checked_add(b)
            .ok_or_else(|| Status::new(drpc::Code(1000), "the sum overflows"))?;
        Ok(Protobuf(pb::AddReply { sum }))
    }
}

pub use drpc::CodecId;
