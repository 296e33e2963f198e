//! The broker's [`RequestHandler`]: request code → processor, and the one place that turns a
//! [`ProcessorError`] into a response (STYLE.md §1 "Dispatch", §3).
//!
//! Unknown codes answer REQUEST_CODE_NOT_SUPPORTED with RocketMQ's remark
//! `" request type <code> not supported"`. Oneway requests are processed but never answered.
//! Connection close removes the connection's producer/consumer registrations and notifies
//! the affected consumer groups.

use std::future::Future;
use std::sync::Arc;

use tern_common::protocol::{RemotingCommand, RequestCode, ResponseCode};
use tern_common::remoting::server::RequestHandler;
use tern_common::remoting::Connection;
use tracing::{debug, warn, Instrument};

use crate::context::BrokerContext;
use crate::error::ProcessorError;
use crate::processor::{admin, client, offset, pull, query, send};
use crate::{schedule, transaction};

/// The broker's request handler.
#[derive(Debug, Clone)]
pub struct BrokerHandler {
    /// Behind one more `Arc` so that each request clones one pointer, not the context's dozen
    /// (cloning and dropping those was ~0.7 % of a publish run's broker CPU).
    ctx: Arc<BrokerContext>,
}

impl BrokerHandler {
    /// A handler over `ctx`.
    pub fn new(ctx: BrokerContext) -> Self {
        BrokerHandler { ctx: Arc::new(ctx) }
    }
}

impl RequestHandler for BrokerHandler {
    fn handle(
        &self,
        conn: Connection,
        request: RemotingCommand,
    ) -> impl Future<Output = Option<RemotingCommand>> + Send {
        let ctx = Arc::clone(&self.ctx);
        let span = tracing::debug_span!("request", code = request.code, opaque = request.opaque);
        async move { dispatch(&ctx, &conn, request).await }.instrument(span)
    }

    fn on_connection_closed(&self, conn: &Connection) {
        for group in self.ctx.clients.connection_closed(conn.id()) {
            debug!(group, conn = conn.id(), "consumer connection closed");
            self.ctx.notify_consumer_ids_changed(&group);
        }
    }
}

/// The REQUEST_CODE_NOT_SUPPORTED answer to `request`.
pub fn not_supported(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(request, ResponseCode::RequestCodeNotSupported)
        .with_remark(format!(" request type {} not supported", request.code))
}

/// The error answer to `request` for `err`.
pub fn error_response(request: &RemotingCommand, err: &ProcessorError) -> RemotingCommand {
    let code = ResponseCode::from(err);
    if code == ResponseCode::SystemError {
        warn!(code = request.code, cause = %err, "request failed");
    } else {
        debug!(code = request.code, answer = %code, cause = %err, "request refused");
    }
    RemotingCommand::response_to(request, code).with_remark(err.to_string())
}

/// Runs the processor of `request` and returns what to answer (`None`: nothing now — oneway,
/// or a long-polled pull answered later).
pub async fn dispatch(
    ctx: &BrokerContext,
    conn: &Connection,
    request: RemotingCommand,
) -> Option<RemotingCommand> {
    let oneway = request.is_oneway();
    // What an error answer needs after the request moved; the answer itself is built only
    // on error (a whole command here would be 144 more bytes in every request's future).
    let (code, opaque, serialize_type) = (request.code, request.opaque, request.serialize_type);
    let template = || RemotingCommand {
        code,
        opaque,
        serialize_type,
        ..Default::default()
    };
    let result = match RequestCode::try_from(code) {
        Ok(code) => route(ctx, conn, code, request).await,
        Err(_) => Ok(Some(not_supported(&template()))),
    };
    let response = match result {
        Ok(response) => response,
        Err(err) => Some(error_response(&template(), &err)),
    };
    if oneway {
        None
    } else {
        response
    }
}

async fn route(
    ctx: &BrokerContext,
    conn: &Connection,
    code: RequestCode,
    request: RemotingCommand,
) -> Result<Option<RemotingCommand>, ProcessorError> {
    use RequestCode as C;
    match code {
        C::SendMessage | C::SendMessageV2 | C::SendBatchMessage => {
            send::handle_send_message(ctx, conn, request).await
        }
        C::PullMessage | C::LitePullMessage => pull::handle_pull_message(ctx, conn, request).await,
        C::QueryConsumerOffset => offset::handle_query_consumer_offset(ctx, conn, request).await,
        C::UpdateConsumerOffset => offset::handle_update_consumer_offset(ctx, conn, request).await,
        C::GetMaxOffset => offset::handle_get_max_offset(ctx, conn, request).await,
        C::GetMinOffset => offset::handle_get_min_offset(ctx, conn, request).await,
        C::SearchOffsetByTimestamp => offset::handle_search_offset(ctx, conn, request).await,
        C::GetEarliestMsgStoretime => {
            offset::handle_earliest_msg_storetime(ctx, conn, request).await
        }
        C::HeartBeat => client::handle_heartbeat(ctx, conn, request).await,
        C::UnregisterClient => client::handle_unregister_client(ctx, conn, request).await,
        C::GetConsumerListByGroup => client::handle_get_consumer_list(ctx, conn, request).await,
        C::LockBatchMq => client::handle_lock_batch(ctx, conn, request).await,
        C::UnlockBatchMq => client::handle_unlock_batch(ctx, conn, request).await,
        C::CheckClientConfig => client::handle_check_client_config(ctx, conn, request).await,
        C::QueryMessage => query::handle_query_message(ctx, conn, request).await,
        C::ViewMessageById => query::handle_view_message_by_id(ctx, conn, request).await,
        C::UpdateAndCreateTopic => admin::handle_update_and_create_topic(ctx, conn, request).await,
        C::DeleteTopicInBroker => admin::handle_delete_topic(ctx, conn, request).await,
        C::GetAllTopicConfig => admin::handle_get_all_topic_config(ctx, conn, request).await,
        C::GetTopicConfig => admin::handle_get_topic_config(ctx, conn, request).await,
        C::GetBrokerRuntimeInfo => admin::handle_get_broker_runtime_info(ctx, conn, request).await,
        C::GetConsumeStats => admin::handle_get_consume_stats(ctx, conn, request).await,
        C::GetTopicStatsInfo => admin::handle_get_topic_stats_info(ctx, conn, request).await,
        C::GetConsumerConnectionList => {
            admin::handle_get_consumer_connection_list(ctx, conn, request).await
        }
        C::GetProducerConnectionList => {
            admin::handle_get_producer_connection_list(ctx, conn, request).await
        }
        C::InvokeBrokerToResetOffset => admin::handle_reset_offset(ctx, conn, request).await,
        C::UpdateAndCreateSubscriptiongroup => {
            admin::handle_update_and_create_subscription_group(ctx, conn, request).await
        }
        C::GetAllSubscriptiongroupConfig => {
            admin::handle_get_all_subscription_group_config(ctx, conn, request).await
        }
        C::DeleteSubscriptiongroup => {
            admin::handle_delete_subscription_group(ctx, conn, request).await
        }
        // The four below wait on other calls (a client, the store) with large futures of
        // their own; boxed, they no longer set the size of every request's future, which is
        // moved whole at each level of the call chain.
        C::GetConsumerRunningInfo => {
            Box::pin(admin::handle_get_consumer_running_info(ctx, conn, request)).await
        }
        C::ConsumeMessageDirectly => {
            Box::pin(admin::handle_consume_message_directly(ctx, conn, request)).await
        }
        C::EndTransaction => {
            Box::pin(transaction::handle_end_transaction(ctx, conn, request)).await
        }
        C::ConsumerSendMsgBack => {
            Box::pin(schedule::handle_consumer_send_msg_back(ctx, conn, request)).await
        }
        _ => Ok(Some(not_supported(&request))),
    }
}
