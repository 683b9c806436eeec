//! SIGHUP: the `--config` file read again and imported like at start, as one refresh.
use std::sync::Arc;

use super::{refresh::blocking, Control, ControlError};
use lb_core::model::ServiceConfig;

impl Control {
    /// Validates `config` whole, applies it to traffic and records it as the staged and
    /// applied configuration. On any error nothing changed: neither traffic nor the store.
    /// Waits for a refresh in progress (and the API's wait for this one).
    pub async fn reimport(self: &Arc<Self>, config: ServiceConfig) -> Result<(), ControlError> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        self.check_import(&config)?;
        lb_core::validate::validate(&config)?;
        let control = Arc::clone(self);
        blocking(move || {
            control.traffic.apply(&config).map_err(|e| ControlError::BadRequest(format!("applying it: {e}")))?;
            control.import(&config)
        })
        .await
    }
}
