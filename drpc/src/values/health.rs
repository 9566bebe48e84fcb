//! An endpoint's health, as `/_drpc/health` reports it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What `/_drpc/health` answers (docs/PROTOCOL.md section 10.4): whether
/// the endpoint takes new work.
///
/// An endpoint is [`Serving`](Health::Serving) from the start, and
/// [`Draining`](Health::Draining) from the moment its shutdown begins.
/// The application sets [`NotServing`](Health::NotServing) (a dependency
/// is down, say) and back with
/// [`Endpoint::set_health`](crate::Endpoint::set_health).
///
/// ```
/// use drpc::Health;
///
/// assert_eq!(Health::Serving.as_str(), "serving");
/// assert_eq!("draining".parse::<Health>().unwrap(), Health::Draining);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// It takes new calls.
    Serving,
    /// It is shutting down: it answers what it runs, and takes nothing new
    /// for long. A load balancer sends new work elsewhere.
    Draining,
    /// It is up but should not be sent work.
    NotServing,
}

/// The service method of the health check.
pub const HEALTH_METHOD: &str = "/_drpc/health";

impl Health {
    /// As on the wire: `serving`, `draining`, `not_serving`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serving => "serving",
            Self::Draining => "draining",
            Self::NotServing => "not_serving",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Serving,
            1 => Self::Draining,
            _ => Self::NotServing,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Health {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Serving, Self::Draining, Self::NotServing]
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a health: serving, draining or not_serving"))
    }
}
