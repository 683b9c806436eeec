//! The splice arithmetic is lb-core's (`lb_core::splice`, sans-io); here its refusals become
//! the hand-off's [`Fallback`] reasons.
use lb_common::{FlowKey, SpliceEntry};
use lb_core::splice::{self, Incompatible, Negotiated};
pub use lb_core::splice::{describe, endpoints_key, Leg};

use super::stats::Fallback;

/// Whether the two connections can be joined at all; see [`splice::compatible`].
pub fn compatible(a: &Negotiated, b: &Negotiated) -> Result<(), Fallback> {
    splice::compatible(a, b).map_err(Fallback::from)
}

/// A splice entry per direction; see [`splice::entries`].
pub fn entries(client: &Leg, server: &Leg) -> Result<[(FlowKey, SpliceEntry); 2], Fallback> {
    splice::entries(client, server).map_err(Fallback::from)
}

impl From<Incompatible> for Fallback {
    fn from(why: Incompatible) -> Self {
        match why {
            Incompatible::Unsupported(what) => Fallback::Unsupported(what),
            Incompatible::OptionsDiffer(what) => Fallback::OptionsDiffer(what),
            Incompatible::Family => Fallback::Family,
            Incompatible::NoTimestamp => Fallback::NoTimestamp,
            Incompatible::Closing => Fallback::Closing,
            Incompatible::MssMismatch => Fallback::MssMismatch,
        }
    }
}
