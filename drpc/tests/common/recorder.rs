//! A plugin that records the name of every hook it sees, for tests of
//! hook order.

use drpc::plugin::{BoxFuture, RouteInfo};
use drpc::proto::{Header, Message};
use drpc::{Addr, CallCtx, Endpoint, Plugin, PushCtx, Session, Status};
use parking_lot::Mutex;

/// Records the name of every hook it sees.
#[derive(Default)]
pub struct Recorder {
    log: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, what: impl Into<String>) {
        self.log.lock().push(what.into());
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.log.lock())
    }
}

impl Plugin for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn after_build(&self, _: &Endpoint) {
        self.push("after_build")
    }
    fn before_close(&self, _: &Endpoint) {
        self.push("before_close")
    }
    fn before_going_away<'a>(&'a self, _: &'a Endpoint) -> BoxFuture<'a, ()> {
        self.push("before_going_away");
        Box::pin(async {})
    }
    fn after_close(&self, _: &Endpoint) {
        self.push("after_close")
    }
    fn after_register(&self, route: RouteInfo<'_>) -> Result<(), Status> {
        self.push(format!("after_register {}", route.path));
        Ok(())
    }
    fn after_listen(&self, _: &Addr) {
        self.push("after_listen")
    }
    fn before_dial(&self, _: &Addr, is_redial: bool) -> Result<(), Status> {
        self.push(format!("before_dial redial={is_redial}"));
        Ok(())
    }
    fn after_dial<'a>(
        &'a self,
        _: &'a Session,
        is_redial: bool,
    ) -> BoxFuture<'a, Result<(), Status>> {
        self.push(format!("after_dial redial={is_redial}"));
        Box::pin(async { Ok(()) })
    }
    fn after_dial_fail(&self, _: &Addr, status: &Status, _: bool) {
        self.push(format!("after_dial_fail {}", status.code().0))
    }
    fn after_accept<'a>(&'a self, _: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        self.push("after_accept");
        Box::pin(async { Ok(()) })
    }
    fn after_session_close(&self, _: &Session) {
        self.push("after_session_close")
    }
    fn before_write_call(&self, _: &Session, m: &mut Message) -> Result<(), Status> {
        self.push(format!("before_write_call {}", m.header.service_method));
        Ok(())
    }
    fn after_write_call(&self, _: &Session, h: &Header) {
        self.push(format!("after_write_call {}", h.service_method))
    }
    fn before_write_reply(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        self.push("before_write_reply");
        Ok(())
    }
    fn after_write_reply(&self, _: &Session, _: &Header) {
        self.push("after_write_reply")
    }
    fn before_write_push(&self, _: &Session, m: &mut Message) -> Result<(), Status> {
        self.push(format!("before_write_push {}", m.header.service_method));
        Ok(())
    }
    fn after_write_push(&self, _: &Session, h: &Header) {
        self.push(format!("after_write_push {}", h.service_method))
    }
    fn before_read_header(&self, _: &Session) {
        self.push("before_read_header")
    }
    fn after_read_call_header(&self, _: &Session, m: &mut Message) -> Result<(), Status> {
        self.push(format!(
            "after_read_call_header {}",
            m.header.service_method
        ));
        Ok(())
    }
    fn after_read_call_body(&self, ctx: &CallCtx) -> Result<(), Status> {
        self.push(format!("after_read_call_body {}", ctx.service_method()));
        Ok(())
    }
    fn after_read_reply_header(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        self.push("after_read_reply_header");
        Ok(())
    }
    fn after_read_reply_body(&self, _: &Session, _: &Header) -> Result<(), Status> {
        self.push("after_read_reply_body");
        Ok(())
    }
    fn after_read_push_header(&self, _: &Session, m: &mut Message) -> Result<(), Status> {
        self.push(format!(
            "after_read_push_header {}",
            m.header.service_method
        ));
        Ok(())
    }
    fn after_read_push_body(&self, ctx: &PushCtx) -> Result<(), Status> {
        self.push(format!("after_read_push_body {}", ctx.service_method()));
        Ok(())
    }
}
