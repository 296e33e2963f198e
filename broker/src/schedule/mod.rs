//! Delayed messages: delay-level delivery, timer messages and CONSUMER_SEND_MSG_BACK
//! (PROTOCOL.md §6).

use std::sync::Arc;

use tern_common::protocol::{RemotingCommand, ResponseCode};
use tern_common::remoting::Connection;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::BrokerContext;
use crate::error::ProcessorError;

/// The schedule service's state, installed into [`BrokerContext::schedule`] by [`start`].
#[derive(Debug, Default)]
pub struct ScheduleService;

/// Starts the delay-level delivery tasks in `tasks`; they stop on `shutdown`.
pub fn start(_ctx: &BrokerContext, _tasks: &mut JoinSet<()>, _shutdown: CancellationToken) {
    let _ = Arc::new(ScheduleService);
}

/// CONSUMER_SEND_MSG_BACK (36): not served yet.
///
/// # Errors
/// Never; the response is REQUEST_CODE_NOT_SUPPORTED.
pub async fn handle_consumer_send_msg_back(
    _ctx: &BrokerContext,
    _conn: &Connection,
    request: RemotingCommand,
) -> Result<Option<RemotingCommand>, ProcessorError> {
    Ok(Some(
        RemotingCommand::response_to(&request, ResponseCode::RequestCodeNotSupported)
            .with_remark(format!(" request type {} not supported", request.code)),
    ))
}
